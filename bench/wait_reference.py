"""The lean reference for `make bench-wait`: the least a long-poll needs on the same stack.
A bare Starlette app on uvicorn, one psycopg LISTEN connection, a dict of asyncio events;
when a job's NOTIFY arrives its waiters read the row from an async pool and answer. No
auth, no ownership check, no job view, no middleware: what any implementation must pay.

Run: `uvicorn bench.wait_reference:app` with COMETJOBS_DATABASE_URL set (bench/wait.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DSN = os.environ["COMETJOBS_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
state: dict[str, AsyncConnectionPool] = {}


async def listen() -> None:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute("LISTEN cometjobs_jobs")
        async for notice in conn.notifies():
            for event in waiters.get(notice.payload, ()):
                event.set()


async def read(job_id: str) -> tuple[str, int] | None:
    async with state["pool"].connection() as conn:
        cur = await conn.execute("SELECT status, progress FROM jobs WHERE id = %s", (job_id,))
        return await cur.fetchone()  # type: ignore[return-value]


async def wait(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    timeout = float(request.query_params.get("wait", "0"))
    event = asyncio.Event()
    waiters[job_id].add(event)
    try:
        row = await read(job_id)
        if row is not None and row[0] not in ("succeeded", "failed", "canceled", "timed_out"):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await event.wait()
            row = await read(job_id)
    finally:
        waiters[job_id].discard(event)
        if not waiters[job_id]:
            del waiters[job_id]
    if row is None:
        return Response(status_code=404)
    return Response(json.dumps({"id": job_id, "status": row[0], "progress": row[1]}),
                    media_type="application/json")


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    pool = AsyncConnectionPool(DSN, min_size=4, max_size=20, open=False)
    await pool.open()
    state["pool"] = pool
    task = asyncio.create_task(listen())
    yield
    task.cancel()
    await pool.close()


app = Starlette(routes=[Route("/v1/jobs/{job_id}", wait)], lifespan=lifespan)
