"""A job's timeline as Server-Sent Events, as it happens: every timeline event (id = its
row id, so a reconnecting EventSource resumes after `Last-Event-ID`), a named `job` event
with the job whenever its status or progress changes, and a named `end` event once the job
has ended and its timeline is all sent. Woken by the same NOTIFYs as the long-poll
(`app.jobs.waiting`); without one the stream re-reads every RECHECK seconds, which also
picks up timeline rows no status change announced (an upstream error).

A stream lasts at most MAX_SECONDS, then closes without `end`: the client reconnects with
`Last-Event-ID` (an EventSource does it by itself), and a server shutting down waits for
no stream longer than for a long-poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi.sse import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.core.db import close_session, get_sessionmaker
from app.jobs import repository as repo
from app.jobs.schemas import JobEventOut, JobOut
from app.jobs.states import TERMINAL
from app.jobs.views import load_out, view_owned
from app.jobs.waiting import get_watch

PAGE = 500
RECHECK = 15.0
# How long a client waits before reconnecting after the stream is cut (milliseconds).
RETRY_MS = 2000
MAX_SECONDS = 60.0


def read(client_id: str | None, job_id: str, after: int | None) -> tuple[JobOut | None, list[JobEventOut]]:
    """The job (the client's own; any job when `client_id` is None, for the console) and
    its timeline events after `after`."""
    session = get_sessionmaker()()
    try:
        if client_id is None:
            job = repo.get(session, job_id)
            out = load_out(session, job) if job is not None else None
        else:
            out = view_owned(session, client_id, job_id)
        if out is None:
            return None, []
        events = repo.events_for(session, job_id, after, PAGE)
        return out, [JobEventOut.model_validate(e, from_attributes=True) for e in events]
    finally:
        close_session(session)


async def timeline(client_id: str | None, job_id: str, after: int | None) -> AsyncIterator[ServerSentEvent]:
    watch = get_watch()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_SECONDS
    shown: tuple[Any, ...] | None = None
    first = True
    while True:
        woken = watch.subscribe(job_id)
        try:
            job, events = await run_in_threadpool(read, client_id, job_id, after)
            if job is None:
                return
            for event in events:
                yield ServerSentEvent(data=event.model_dump(mode="json"), id=str(event.id),
                                      retry=RETRY_MS if first else None)
                first = False
                after = event.id
            state = (job.status, job.progress)
            if state != shown:
                yield ServerSentEvent(data=job.model_dump(mode="json"), event="job")
                shown = state
            if len(events) == PAGE:
                continue  # more to send before waiting
            if job.status in TERMINAL:
                yield ServerSentEvent(data={"id": job.id, "status": job.status.value}, event="end")
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return  # the client resumes with Last-Event-ID
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(watch.recheck or RECHECK, remaining)):
                    await woken.wait()
        finally:
            watch.unsubscribe(job_id, woken)
