"""Worker threads of an API process.

Endpoints' database work runs in a few threads (`API_THREADS`, anyio's default limiter,
which also serves every plain `def` endpoint): the GIL runs one at a time, so threads
only overlap waits on Postgres, and more of them than that makes latency unfair: with
20, bench-api's POST p99 was 1.1-1.7 s at 64 connections; with 2 to 8, 0.6-0.96 s at the
same throughput (a 2-core machine whose reference did 230-280 POST/s; see the README).

Storage I/O (an upload written to S3, an object streamed to a caller chunk by chunk) can
hold a thread for as long as the network takes: it runs under a limiter of its own, so
slow transfers never take the threads that answer everyone else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import anyio
import anyio.to_thread

from app.core.settings import Settings

T = TypeVar("T")
_storage: dict[str, anyio.CapacityLimiter] = {}
_DONE = object()


def configure(settings: Settings) -> None:
    """Called from the app's lifespan, inside its event loop."""
    pooled = settings.db_pool_size + settings.db_max_overflow
    anyio.to_thread.current_default_thread_limiter().total_tokens = max(1, min(settings.api_threads, pooled))
    _storage["limiter"] = anyio.CapacityLimiter(max(1, pooled))


def _limiter() -> anyio.CapacityLimiter | None:
    return _storage.get("limiter")  # None (anyio's default) in an app run without its lifespan


async def run_storage(func: Callable[..., T], *args: object) -> T:
    """`func(*args)` in a thread of the storage allowance."""
    return await anyio.to_thread.run_sync(func, *args, limiter=_limiter())


async def stream_storage(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A storage object's chunks, each read in a thread of the storage allowance (what
    Starlette does for a sync iterator, on the default limiter)."""
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, _DONE, limiter=_limiter())
            if chunk is _DONE:
                return
            yield chunk  # type: ignore[misc]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):  # a caller gone mid-stream still closes the object
                await anyio.to_thread.run_sync(close, limiter=_limiter())
