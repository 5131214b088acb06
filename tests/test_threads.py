"""An API process's worker threads (app/core/threads.py): a few for the endpoints, and
storage transfers on an allowance of their own that never takes those few."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool

from app.core import threads
from app.core.settings import Settings


def _settings(**values: object) -> Settings:
    return Settings(cometapi_key="k", console_secret="s", **values)  # type: ignore[arg-type]


def test_the_endpoints_get_api_threads_and_never_more_than_the_pool():
    async def configured(**values: object) -> float:
        threads.configure(_settings(**values))
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(lambda: configured(api_threads=4)) == 4
    assert anyio.run(lambda: configured(api_threads=50, db_pool_size=5, db_max_overflow=3)) == 8


def test_slow_storage_transfers_leave_the_endpoints_threads_free():
    release = threading.Event()

    def stalled_chunks():
        release.wait(30)  # a transfer stuck on the network
        yield b"late"

    async def scenario() -> tuple[bytes, list[bytes]]:
        threads.configure(_settings(api_threads=2, db_pool_size=10, db_max_overflow=0))
        received: list[bytes] = []

        async def download() -> None:
            async for chunk in threads.stream_storage(stalled_chunks()):
                received.append(chunk)

        async with anyio.create_task_group() as group:
            for _ in range(5):  # more stuck transfers than the endpoints have threads
                group.start_soon(download)
            with anyio.fail_after(10):
                answer = await run_in_threadpool(lambda: b"answered")  # an endpoint's work still runs
            release.set()
        return answer, received

    answer, received = anyio.run(scenario)
    assert answer == b"answered"
    assert received == [b"late"] * 5
