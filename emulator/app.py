"""A CometAPI emulator served over real HTTP, for tests, `make dev` and benchmarks.

It follows CometAPI's documented contracts (`shared/upstream/COMETAPI.md`, and the
fixtures under `tests/contracts/`, which it is tested against) and is **strict**: an
undocumented path is a 404 and an undocumented or missing required body field a 400,
both in CometAPI's error envelope, so a client that sends something CometAPI does not
document fails here first. Where CometAPI documents nothing, each family module says
what it emulates instead and marks it UNVERIFIED.

It has switches for latency, 500s, 429s with Retry-After, slow, huge and interrupted
downloads.
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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from emulator.state import Config, Saturated, State, content_stream

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


def refuse_fields(body: Any, allowed: set[str] | frozenset[str], required: tuple[str, ...] = ()) -> Response | None:
    """The 400 CometAPI answers a body with a field the route does not document, or
    without one it requires (the error guide's "provider-specific field the endpoint
    doesn't accept"); None when the body's fields are in order."""
    if not isinstance(body, dict):
        return error(400, "the request body must be a JSON object", code="invalid_request")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        return error(400, f"unknown field(s) {', '.join(unknown)}: not accepted by this endpoint",
                     code="invalid_request")
    missing = [name for name in required if body.get(name) in (None, "", [])]
    if missing:
        return error(400, f"{', '.join(missing)} is required", code="invalid_request")
    return None


async def json_body(request: Request) -> Any:
    """The JSON body, or None when there is none or it is not JSON."""
    try:
        return await request.json()
    except ValueError:
        return None


def get_state(request: Request) -> State:
    state: State = request.app.state.emulator
    return state


async def stream_content(
    state: State, task_id: str, variant: str, size: int, media_type: str, rate: float | None = None
) -> Response:
    """Stream deterministic bytes, honouring the download-rate and cut-off switches
    (`rate` overrides the global download rate for this stream)."""
    config = state.config
    bytes_per_second = config.download_rate if rate is None else rate
    seed = f"{task_id}:{variant}"
    cut = None
    if config.cut_download_at is not None and state.cuts < config.cut_downloads:
        state.cuts += 1
        cut = config.cut_download_at

    async def body() -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        sent = 0
        for piece in content_stream(seed, size, media_type=media_type):
            if cut is not None and sent + len(piece) > cut:
                piece = piece[: max(0, cut - sent)]
                if piece:
                    yield piece
                raise ConnectionResetError("emulator: download cut off on purpose")
            digest.update(piece)
            sent += len(piece)
            yield piece
            if bytes_per_second > 0:
                await asyncio.sleep(len(piece) / bytes_per_second)
        state.stats.served_sha256[seed] = digest.hexdigest()

    return StreamingResponse(body(), media_type=media_type, headers={"Content-Length": str(size)})


class Faults:
    """Latency, auth, injected 500s and 429s for every upstream route (plain ASGI:
    the emulator must stay cheaper per request than the client it measures)."""

    def __init__(self, app: Any, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        state, cfg = self.state, self.state.config
        if cfg.latency > 0:
            await asyncio.sleep(cfg.latency)
        fault: Response | None = None
        if cfg.api_key:
            auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode()
            if auth != f"Bearer {cfg.api_key}":
                state.stats.faults["unauthorized"] += 1
                fault = error(401, "Invalid token", code="")
        if fault is None:
            roll = state.rng.random()
            if roll < cfg.error_rate:
                state.stats.faults["500"] += 1
                fault = error(500, "upstream provider error", code="")
            elif roll < cfg.error_rate + cfg.throttle_rate:
                state.stats.faults["429"] += 1
                fault = error(429, "rate limit exceeded", code="rate_limit",
                              headers={"Retry-After": f"{cfg.retry_after:g}"})
        if fault is not None:
            await fault(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(config: Config | None = None) -> FastAPI:
    app = FastAPI(title="CometAPI emulator", docs_url=None, redoc_url=None, openapi_url=None)
    state = State(config or Config())
    app.state.emulator = state

    app.add_middleware(Faults, state=state)

    @app.exception_handler(HTTPException)
    async def unknown_route(_request: Request, exc: HTTPException) -> Response:
        # A path CometAPI does not document (or a method it does not take there).
        return error(exc.status_code, f"{exc.detail}: no such CometAPI route", code="not_found"
                     if exc.status_code == 404 else "invalid_request")

    @app.exception_handler(Saturated)
    async def saturated(_request: Request, exc: Saturated) -> Response:
        return error(429, f"too many tasks in flight ({exc.in_flight}); retry later", code="rate_limit",
                     headers={"Retry-After": f"{state.config.retry_after:g}"})

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_request: Request, exc: RequestValidationError) -> Response:
        return error(400, f"invalid request: {exc.errors()[:1]}", code="invalid_request")

    # The admin reads run on the event loop (async), where the tasks are created and polled:
    # in a worker thread they would iterate `state.tasks` while the loop changes it.
    @app.get(f"{ADMIN_PREFIX}/stats")
    async def stats() -> dict[str, Any]:
        out = state.stats.as_dict()
        out["tasks"] = len(state.tasks)
        out["polls_per_task"] = {t.id: t.polls for t in state.tasks.values()}
        return out

    @app.get(f"{ADMIN_PREFIX}/tasks")
    async def tasks() -> list[dict[str, Any]]:
        return [
            {"id": t.id, "family": t.family, "model": t.model, "prompt": t.prompt, "polls": t.polls,
             "poll_times": t.poll_times, "params": t.params}
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

    @app.post(f"{ADMIN_PREFIX}/tasks/bulk")
    async def bulk_tasks(request: Request) -> dict[str, list[str]]:
        """Create many tasks at once (benchmarks): {family, model, prefix, count, job_seconds}."""
        spec = await request.json()
        ids = []
        for n in range(int(spec["count"])):
            seconds = spec.get("job_seconds", state.config.job_seconds)
            task = state.new_task(spec["family"], spec["model"], f"bulk-{n} [job-seconds={seconds}]",
                                  spec.get("prefix", "video_"))
            ids.append(task.id)
        return {"ids": ids}

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
