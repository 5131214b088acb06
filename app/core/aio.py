"""One event loop per worker process, kept between task runs, so the pooled
async HTTP clients (and their keep-alive connections) survive from one beat
tick to the next. Re-created after a fork."""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_state: dict[str, Any] = {"pid": None}


def _runner() -> asyncio.Runner:
    if _state["pid"] != os.getpid():
        _state.clear()
        _state["pid"] = os.getpid()
        _state["runner"] = asyncio.Runner()
    return _state["runner"]


def run(coro: Coroutine[Any, Any, T]) -> T:
    # The caller's context (the task's bound log fields), not the one the runner captured when created.
    return _runner().run(coro, context=contextvars.copy_context())


def upstream_client() -> Any:
    """The process's pooled AsyncCometAPI (created inside the running loop)."""
    if "upstream" not in _state:
        from app.providers.http import AsyncCometAPI

        _state["upstream"] = AsyncCometAPI()
    return _state["upstream"]


def webhook_client() -> Any:
    if "webhooks" not in _state:
        from app.core.settings import get_settings
        from app.webhooks.transport import make_client

        settings = get_settings()
        _state["webhooks"] = make_client(
            settings.webhook_allowed_cidrs, settings.webhook_timeout.total_seconds(), settings.webhook_concurrency
        )
    return _state["webhooks"]


def shutdown() -> None:
    if _state.get("pid") != os.getpid() or "runner" not in _state:
        return
    runner: asyncio.Runner = _state["runner"]

    async def _close() -> None:
        if "upstream" in _state:
            await _state["upstream"].aclose()
        if "webhooks" in _state:
            await _state["webhooks"].aclose()

    try:
        runner.run(_close())
    finally:
        runner.close()
        _state.clear()
