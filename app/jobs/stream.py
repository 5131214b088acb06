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

from app.core.db import open_session
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
# How long a transaction of ours may take between inserting a timeline event and committing
# it, at most (see `_Recent`); well under DB_STATEMENT_TIMEOUT's statements in practice.
SETTLE = 10.0


def read(client_id: str | None, job_id: str, after: int | None) -> tuple[JobOut | None, list[JobEventOut]]:
    """The job (the client's own; any job when `client_id` is None, for the console) and
    its timeline events after `after`."""
    with open_session() as session:
        if client_id is None:
            job = repo.get(session, job_id)
            out = load_out(session, job) if job is not None else None
        else:
            out = view_owned(session, client_id, job_id)
        if out is None:
            return None, []
        events = repo.events_for(session, job_id, after, PAGE)
        return out, [JobEventOut.model_validate(e, from_attributes=True) for e in events]


async def timeline(client_id: str | None, job_id: str, after: int | None) -> AsyncIterator[ServerSentEvent]:
    watch = get_watch()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_SECONDS
    shown: tuple[Any, ...] | None = None
    first = True
    recent = _Recent(after)
    read_from = after
    while True:
        woken = watch.subscribe(job_id)
        try:
            job, events = await run_in_threadpool(read, client_id, job_id, read_from)
            if job is None:
                return
            for event in events:
                if recent.is_new(event.id, loop.time()):
                    yield ServerSentEvent(data=event.model_dump(mode="json"), id=str(event.id),
                                          retry=RETRY_MS if first else None)
                    first = False
            state = (job.status, job.progress)
            if state != shown:
                yield ServerSentEvent(data=job.model_dump(mode="json"), event="job")
                shown = state
            if len(events) == PAGE:
                read_from = events[-1].id
                continue  # more to send before waiting
            read_from = recent.settled(loop.time())
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


class _Recent:
    """The events a stream sent lately. Event ids come from one sequence, taken at insert and
    seen at commit: a transaction that took its id first can commit after one that took a
    later id (a worker's event and a cancel, say). Reading only after the last id sent would
    skip such an event for good, so each read goes back to the last id sent more than SETTLE
    seconds ago (no transaction of ours stays open that long) and sends only what is new."""

    def __init__(self, after: int | None) -> None:
        self.floor = after
        self.sent: dict[int, float] = {}

    def is_new(self, event_id: int, now: float) -> bool:
        if event_id in self.sent or (self.floor is not None and event_id <= self.floor):
            return False
        self.sent[event_id] = now
        return True

    def settled(self, now: float) -> int | None:
        """Where the next read starts: every id up to it was sent, or will never appear."""
        old = [event_id for event_id, at in self.sent.items() if now - at > SETTLE]
        if old:
            self.floor = max(self.floor or 0, *old)
            self.sent = {i: at for i, at in self.sent.items() if i > self.floor}
        return self.floor
