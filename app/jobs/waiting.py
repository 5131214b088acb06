"""Waiting for a job to change without polling the database: one LISTEN connection per
API process (`JobWatch`) hears `app.jobs.notify`'s NOTIFYs and wakes the requests waiting
on that job; each woken request reads the job once. 1,000 waiters cost 1,000 idle
asyncio events and one connection, not 1,000 query loops.

On SQLite (embedded dev) there is no NOTIFY: waiters re-read every `SQLITE_RECHECK`
seconds. If the listener loses its connection it wakes every waiter (they re-read, so a
change made while it was away is not missed) and reconnects with a backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import structlog
from sqlalchemy.engine import make_url

from app.core.settings import get_settings
from app.jobs.notify import CHANNEL

log = structlog.get_logger(__name__)
MAX_WAIT = 60
SQLITE_RECHECK = 1.0
RECONNECT_DELAYS = (0.5, 1, 2, 5)
T = TypeVar("T")


class JobWatch:
    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self.loop = asyncio.get_running_loop()
        self.recheck = None if dsn else SQLITE_RECHECK
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self.dsn and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="job-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        return event

    def unsubscribe(self, job_id: str, event: asyncio.Event) -> None:
        waiting = self._waiters.get(job_id)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _listen(self) -> None:
        assert self.dsn is not None
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, application_name="cometjobs-watch"
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        log.info("job_watch_reconnected")
                        self._wake_all()
                    failures = 0
                    self.connected.set()
                    async for notice in conn.notifies():
                        self._wake(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any loss of the connection: re-read, reconnect
                self.connected.clear()
                self._wake_all()
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                log.warning("job_watch_lost", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)


_watch: dict[str, JobWatch] = {}


def get_watch() -> JobWatch:
    """This process's watch, started on first use inside the running loop."""
    watch = _watch.get("watch")
    if watch is None or watch.loop is not asyncio.get_running_loop():
        # First use, or a loop that replaced the one this watch was made in (an app served
        # again in the same process, as tests do): the old listener went with its loop.
        url = make_url(get_settings().database_url)
        dsn = None
        if url.get_backend_name() == "postgresql":
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        watch = _watch["watch"] = JobWatch(dsn)
    watch.start()
    return watch


async def close_watch() -> None:
    watch = _watch.pop("watch", None)
    if watch is not None:
        await watch.stop()


async def wait_until(
    job_id: str, read: Callable[[], Awaitable[T | None]], done: Callable[[T], bool], timeout: float,
) -> T | None:
    """Read the job (`read`) until `done` says so or `timeout` seconds pass, reading again
    only when the watch says the job changed. The last read is returned (None: no such job)."""
    watch = get_watch()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        # Subscribed before reading: a change committed between the read and the wait still wakes us.
        event = watch.subscribe(job_id)
        try:
            current = await read()
            if current is None or done(current):
                return current
            remaining = deadline - loop.time()
            if remaining <= 0:
                return current
            pause = remaining if watch.recheck is None else min(remaining, watch.recheck)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await event.wait()
        finally:
            watch.unsubscribe(job_id, event)
