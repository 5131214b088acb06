"""The FastAPI gateway: `create_app()` wires routers, errors, middleware."""

from __future__ import annotations

import gc
import os
import re
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import console, docs
from app.core import metrics, queue, threads
from app.core.errors import PROBLEM_MEDIA_TYPE, install_error_handlers, problem_response
from app.core.limits import BodyLimits
from app.core.logging import configure_logging, log_access, redact, safe_traceback
from app.core.settings import get_settings

log = structlog.get_logger("cometjobs.api")
# A caller's X-Request-ID is kept only if it cannot forge or break a log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


class RequestContext:
    """Request id, access log and HTTP metrics, labelled by route template; and the last
    word on any error nothing else handled: a problem+json 500 carrying the request id,
    logged once. It is not re-raised: Starlette's ServerErrorMiddleware would answer
    again and re-raise, and uvicorn would then drop the keep-alive connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-request-id", b"").decode("ascii", "replace")
        if _REQUEST_ID.fullmatch(offered):
            # Echoed as sent, logged redacted: a caller may have sent a key as its id.
            request_id, logged_id = offered, redact(offered)
        else:
            request_id = logged_id = uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=logged_id)
        started = time.perf_counter()
        status = [0]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            await self._internal_error(exc, scope, receive, send_with_id, request_id, answered=bool(status[0]))
            if isinstance(exc, ClientDisconnect) and not status[0]:
                status[0] = 499  # as nginx counts them: not a server error
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            method = scope.get("method", "GET")
            status[0] = status[0] or 500
            metrics.request_served(template, method, status[0], elapsed)
            if template not in ("/metrics", "/healthz"):
                log_access(method=method, route=template, status=status[0], duration_ms=round(elapsed * 1000, 1))

    @staticmethod
    async def _internal_error(
        exc: Exception, scope: Scope, receive: Receive, send: Send, request_id: str, *, answered: bool
    ) -> None:
        if isinstance(exc, ClientDisconnect):
            return  # nobody is left to answer
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        # The message of an exception may quote the request (a psycopg DETAIL line, a
        # value): the log gets the types and the stack only.
        log.error("internal_error", method=scope.get("method"), route=route, error=type(exc).__name__,
                  exception=safe_traceback(exc))
        if answered:
            return  # the answer is half sent; returning unfinished makes uvicorn close the connection
        response = problem_response(
            500, "internal_error", "Internal server error",
            f"an unexpected error; quote request id {request_id} when reporting it",
            instance=scope.get("path"), request_id=request_id,
        )
        await response(scope, receive, send)


# Set by `cometjobs api` for the processes it serves from (a test's in-process app is not one).
SERVING_PROCESS = "COMETJOBS_SERVING_PROCESS"


def _tune_gc() -> None:
    """Everything built by now (modules, the app, its schemas) lives as long as the process:
    frozen out of the collector's generations, a full collection no longer walks it; and a
    request's short-lived objects are collected every 10,000 allocations, not every 700.
    bench-api, POST: 0.51-0.59 of the reference without, 0.56-0.70 with (p99 251-424 ms
    against 326-474; runs on one 2-core machine vary that much)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # A burst waits in the event loop (cheaply, in order) for one of a few worker threads,
    # instead of in many threads contending for the GIL (app/core/threads.py).
    threads.configure(get_settings())
    if os.environ.get(SERVING_PROCESS):
        _tune_gc()
    yield
    from app.jobs.waiting import close_watch

    await close_watch()  # the long-poll's LISTEN connection, if a request opened it


class Gateway(FastAPI):
    """FastAPI with our additions to the generated spec (per-family input schemas,
    problem+json error bodies)."""

    def openapi(self) -> dict[str, Any]:
        return _openapi(self)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    from app.providers.registry import adapter_for, load_catalog

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                         webhooks=app.webhooks.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # The shipped catalogue, not COMETJOBS_MODELS_FILE: the exported contract must not depend on deployment.
    models: dict[str, list[str]] = defaultdict(list)
    adapters = {}
    for spec in load_catalog().values():
        models[spec.family].append(spec.id)
        adapters[spec.family] = adapter_for(spec)
    refs = []
    for family, adapter in sorted(adapters.items()):
        model_schema = adapter.input_model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in model_schema.pop("$defs", {}).items():
            components.setdefault(name, sub)
        name = adapter.input_model.__name__
        model_schema["x-models"] = sorted(set(components.get(name, {}).get("x-models", [])) | set(models[family]))
        components[name] = model_schema
        if {"$ref": f"#/components/schemas/{name}"} not in refs:
            refs.append({"$ref": f"#/components/schemas/{name}"})
    job_create = components.get("JobCreate", {}).get("properties", {})
    if "input" in job_create:
        description = job_create["input"].get("description", "")
        job_create["input"] = {
            "description": description + " One of the per-family input schemas; GET /v1/models says which "
            "model takes which, with its constraints.",
            "anyOf": refs,
        }
    # Errors are problem+json, not application/json.
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if code.isdigit() and int(code) >= 400:
                    content.pop("text/event-stream", None)  # an event stream's errors are problem+json too
                if code.isdigit() and int(code) >= 400 and "application/json" in content:
                    content.setdefault(PROBLEM_MEDIA_TYPE, {"schema": {"$ref": "#/components/schemas/Problem"}})
                    del content["application/json"]
    app.openapi_schema = schema
    return schema


def create_app(publisher: queue.Publisher | None = None) -> FastAPI:
    """The gateway. Messages go out through `publisher` (default: a producer-only Celery
    app on the configured broker), installed here for the whole process."""
    settings = get_settings().require("cometapi_key", "console_secret")
    configure_logging(settings.effective_log_format, settings.log_level)
    queue.install(publisher or queue.producer(settings))
    from app.artifacts.endpoints import router as artifacts_router
    from app.clients.endpoints import router as clients_router
    from app.health.endpoints import router as health_router
    from app.health.metrics import router as metrics_router
    from app.jobs.endpoints import router as jobs_router
    from app.providers.endpoints import router as models_router
    from app.webhooks import events as webhook_events
    from app.webhooks.endpoints import router as webhooks_router

    app = Gateway(
        lifespan=_lifespan,
        title="cometjobs",
        version="0.1.0",
        # Our own /docs and /redoc (app/docs.py): FastAPI's load their assets from a CDN.
        docs_url=None,
        redoc_url=None,
        description="Durable jobs for CometAPI's asynchronous generation models: submit, poll, store, "
        "and a signed webhook when the job ends. Errors are RFC 9457 problem+json with a stable `code`.",
    )
    install_error_handlers(app)
    routers = (jobs_router, artifacts_router, webhooks_router, clients_router, models_router, health_router,
               metrics_router)
    for router in routers:
        app.include_router(router)
    webhook_events.install(app.webhooks)
    docs.install(app)
    console.install(app)
    app.add_middleware(
        BodyLimits, json_bytes=settings.max_json_bytes, upload_bytes=settings.max_upload_bytes,
        body_timeout=settings.body_timeout.total_seconds(),
    )
    app.add_middleware(RequestContext)  # outermost: added last
    return app
