"""The lean reference for `make bench-api`: the least the gateway's work needs on the
same stack (FastAPI on uvicorn, psycopg, redis-py, the same Postgres tables), run the
same way: plain `def` endpoints in FastAPI's worker threads over a pool of
synchronous connections, as the gateway does. (`REFERENCE_MODE=async`: `async def`
endpoints on psycopg's async pool and redis.asyncio, a different execution model,
for comparison.)

POST: look the key up by hash, insert the job and its first event in one
transaction, publish one Redis message, answer 202. GET by id: key lookup, the job
row, its events. List: key lookup, a page of rows. No validation per model, no
idempotency, no metrics, no logs: what any implementation must pay, and no more.

Run: `uvicorn bench.api_reference:app` with COMETJOBS_DATABASE_URL and
COMETJOBS_BROKER_URL set (bench/api.py does this).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

DSN = os.environ["COMETJOBS_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
BROKER = os.environ["COMETJOBS_BROKER_URL"]
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
    state["pool"] = AsyncConnectionPool(DSN, min_size=10, max_size=20, open=False)
    await state["pool"].open()
    state["redis"] = redis.Redis.from_url(BROKER)
    yield
    await state["pool"].close()
    await state["redis"].aclose()


app = FastAPI(lifespan=lifespan)


class JobIn(BaseModel):
    model: str
    input: dict[str, Any]


async def _client_id(request: Request, conn: Any) -> str | None:
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    digest = hashlib.sha256(token.encode()).hexdigest()
    row = await (await conn.execute("SELECT id FROM clients WHERE api_key_hash = %s", (digest,))).fetchone()
    return row[0] if row else None


@app.post("/v1/jobs", status_code=202)
async def create(body: JobIn, request: Request) -> Response:
    now = datetime.now(UTC)
    job_id = "job_" + secrets.token_hex(13)
    async with state["pool"].connection() as conn:
        client_id = await _client_id(request, conn)
        if client_id is None:
            return JSONResponse({"code": "unauthorized"}, status_code=401)
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO jobs (id, client_id, model, family, kind, input, metadata, webhook_events, "
                "storage_prefix, status, progress, submit_attempts, collect_attempts, "
                "due_at, created_at, updated_at, status_changed_at, progress_at) VALUES (%s, %s, %s, 'sora', "
                "'video', %s, '{}', '[]', %s, 'queued', 0, 0, 0, %s, %s, %s, %s, %s)",
                (job_id, client_id, body.model, Jsonb(body.input), f"{client_id}/{job_id}",
                 now + timedelta(seconds=15), now, now, now, now),
            )
            await conn.execute(
                "INSERT INTO job_events (job_id, type, status, message, data, created_at) "
                "VALUES (%s, 'status', 'queued', 'accepted', '{}', %s)", (job_id, now),
            )
    await state["redis"].lpush("bench-reference-submit", json.dumps({"task": "submit", "args": [job_id]}))
    return JSONResponse({"id": job_id, "status": "queued", "model": body.model, "input": body.input},
                        status_code=202)


@app.get("/v1/jobs/{job_id}")
async def get(job_id: str, request: Request) -> Response:
    async with state["pool"].connection() as conn:
        client_id = await _client_id(request, conn)
        if client_id is None:
            return JSONResponse({"code": "unauthorized"}, status_code=401)
        row = await (await conn.execute(
            "SELECT id, model, status, progress, input, metadata, created_at, updated_at FROM jobs "
            "WHERE id = %s AND client_id = %s", (job_id, client_id))).fetchone()
        if row is None:
            return JSONResponse({"code": "not_found"}, status_code=404)
        events = await (await conn.execute(
            "SELECT id, type, status, created_at FROM job_events WHERE job_id = %s ORDER BY id", (job_id,)
        )).fetchall()
    return JSONResponse({
        "id": row[0], "model": row[1], "status": row[2], "progress": row[3], "input": row[4], "metadata": row[5],
        "created_at": row[6].isoformat(), "updated_at": row[7].isoformat(),
        "events": [{"id": e[0], "type": e[1], "status": e[2], "created_at": e[3].isoformat()} for e in events],
    })


@app.get("/v1/jobs")
async def list_jobs(request: Request, limit: int = 50) -> Response:
    async with state["pool"].connection() as conn:
        client_id = await _client_id(request, conn)
        if client_id is None:
            return JSONResponse({"code": "unauthorized"}, status_code=401)
        rows = await (await conn.execute(
            "SELECT id, model, status, progress, input, metadata, created_at FROM jobs WHERE client_id = %s "
            "ORDER BY id DESC LIMIT %s", (client_id, min(limit, 200)))).fetchall()
    return JSONResponse({"data": [
        {"id": r[0], "model": r[1], "status": r[2], "progress": r[3], "input": r[4], "metadata": r[5],
         "created_at": r[6].isoformat()} for r in rows]})
