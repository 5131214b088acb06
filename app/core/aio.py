"""One event loop per worker process, kept between task runs, so pooled async
clients (and their keep-alive connections) survive from one beat tick to the
next. Re-created after a fork."""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar, cast

T = TypeVar("T")


class Closeable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Closeable)
_state: dict[str, Any] = {"pid": None}
# Clients bound to the loop that made them, with the pid that made them (a forked child
# must not reuse its parent's sockets).
_resources: dict[str, tuple[int, Closeable]] = {}


def _runner() -> asyncio.Runner:
    if _state.get("pid") != os.getpid():
        _state.clear()
        _resources.clear()
        _state["pid"] = os.getpid()
        _state["runner"] = asyncio.Runner()
    runner: asyncio.Runner = _state["runner"]
    return runner


def run(coro: Coroutine[Any, Any, T]) -> T:
    # The caller's context (the task's bound log fields), not the one the runner captured when created.
    return _runner().run(coro, context=contextvars.copy_context())


def loop_resource(name: str, factory: Callable[[], C]) -> C:
    """A client that lives as long as this process's loop: made on first use (inside the
    running loop), closed by `shutdown()`."""
    held = _resources.get(name)
    if held is None or held[0] != os.getpid():
        held = (os.getpid(), factory())
        _resources[name] = held
    return cast(C, held[1])


async def close_resources() -> None:
    """Close this process's loop-bound clients (from inside the loop that made them)."""
    mine = [resource for pid, resource in _resources.values() if pid == os.getpid()]
    _resources.clear()
    for resource in mine:
        await resource.aclose()


def shutdown() -> None:
    if _state.get("pid") != os.getpid() or "runner" not in _state:
        return
    runner: asyncio.Runner = _state["runner"]
    try:
        runner.run(close_resources())
    finally:
        runner.close()
        _state.clear()
