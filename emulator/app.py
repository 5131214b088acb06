"""A CometAPI emulator served over real HTTP, for tests, `make dev` and benchmarks.

It follows the contracts in `shared/upstream/COMETAPI.md` and has switches for
latency, 500s, 429s with Retry-After, slow, huge and interrupted downloads.
Switches are set at start (CLI flags) or at run time (`POST /_emulator/config`);
`GET /_emulator/stats` reports what it saw.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import pkgutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from emulator.state import Config, State, content_stream

ADMIN_PREFIX = "/_emulator"


def error(status: int, message: str, code: str = "", type_: str = "comet_api_error",
          headers: dict[str, str] | None = None) -> JSONResponse:
    """CometAPI's error envelope, with the request id inside the message as live errors have it."""
    request_id = uuid.uuid4().hex[:20]
    return JSONResponse(
        {"error": {"message": f"{message} (request id: {request_id})", "type": type_, "param": "", "code": code}},
        status_code=status,
        headers=headers,
    )


def get_state(request: Request) -> State:
    return request.app.state.emulator


async def stream_content(state: State, task_id: str, variant: str, size: int, media_type: str) -> Response:
    """Stream deterministic bytes, honouring the download-rate and cut-off switches."""
    config = state.config
    seed = f"{task_id}:{variant}"
    cut = None
    if config.cut_download_at is not None and state.cuts < config.cut_downloads:
        state.cuts += 1
        cut = config.cut_download_at

    async def body() -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        sent = 0
        for piece in content_stream(seed, size):
            if cut is not None and sent + len(piece) > cut:
                piece = piece[: max(0, cut - sent)]
                if piece:
                    yield piece
                raise ConnectionResetError("emulator: download cut off on purpose")
            digest.update(piece)
            sent += len(piece)
            yield piece
            if config.download_rate > 0:
                await asyncio.sleep(len(piece) / config.download_rate)
        state.stats.served_sha256[seed] = digest.hexdigest()

    return StreamingResponse(body(), media_type=media_type, headers={"Content-Length": str(size)})


def create_app(config: Config | None = None) -> FastAPI:
    app = FastAPI(title="CometAPI emulator", docs_url=None, redoc_url=None, openapi_url=None)
    state = State(config or Config())
    app.state.emulator = state

    @app.middleware("http")
    async def faults(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith(ADMIN_PREFIX):
            return await call_next(request)
        cfg = state.config
        if cfg.latency > 0:
            await asyncio.sleep(cfg.latency)
        if cfg.api_key and request.headers.get("authorization") != f"Bearer {cfg.api_key}":
            state.stats.faults["unauthorized"] += 1
            return error(401, "Invalid token", code="")
        roll = state.rng.random()
        if roll < cfg.error_rate:
            state.stats.faults["500"] += 1
            return error(500, "upstream provider error", code="")
        if roll < cfg.error_rate + cfg.throttle_rate:
            state.stats.faults["429"] += 1
            return error(429, "rate limit exceeded", code="rate_limit",
                         headers={"Retry-After": f"{cfg.retry_after:g}"})
        return await call_next(request)

    @app.get(f"{ADMIN_PREFIX}/stats")
    def stats() -> dict[str, Any]:
        out = state.stats.as_dict()
        out["tasks"] = len(state.tasks)
        out["polls_per_task"] = {t.id: t.polls for t in state.tasks.values()}
        return out

    @app.get(f"{ADMIN_PREFIX}/tasks")
    def tasks() -> list[dict[str, Any]]:
        return [
            {"id": t.id, "family": t.family, "model": t.model, "prompt": t.prompt, "polls": t.polls,
             "params": t.params}
            for t in state.tasks.values()
        ]

    @app.get(f"{ADMIN_PREFIX}/config")
    def get_config() -> dict[str, Any]:
        return state.config.as_dict()

    @app.post(f"{ADMIN_PREFIX}/config")
    async def set_config(request: Request) -> Response:
        values = await request.json()
        try:
            state.config.update(values)
        except KeyError as exc:
            return JSONResponse({"error": f"unknown switch {exc.args[0]}"}, status_code=400)
        return JSONResponse(state.config.as_dict())

    @app.post(f"{ADMIN_PREFIX}/reset")
    def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    @app.get(f"{ADMIN_PREFIX}/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    import emulator.families as families

    for module_info in sorted(pkgutil.iter_modules(families.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"emulator.families.{module_info.name}")
        app.include_router(module.router)
    return app
