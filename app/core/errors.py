"""Errors as data: one base class with an HTTP status and a stable `code`,
rendered as RFC 9457 problem+json by one set of handlers."""

from __future__ import annotations

import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger(__name__)


class FieldError(BaseModel):
    field: str
    message: str
    code: str


class Problem(BaseModel):
    """RFC 9457 problem details, plus a stable machine-readable `code`."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    request_id: str | None = Field(
        None, description="On a 500: the request's X-Request-ID, which names it in our logs"
    )


class AppError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        if code:
            self.code = code


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "The request is not valid"

    @classmethod
    def field(cls, field: str, message: str, code: str = "invalid") -> ValidationFailed:
        return cls(message, errors=[FieldError(field=field, message=message, code=code)])


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "This API key may not do that"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict with the resource's current state"


class RequestTimeout(AppError):
    status, code, title = 408, "request_timeout", "The request body did not arrive in time"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class ServiceUnavailable(AppError):
    status, code, title = 503, "service_unavailable", "Service temporarily unavailable"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    body = Problem(
        type=f"/problems/{code}",
        title=title,
        status=status,
        code=code,
        detail=detail,
        instance=instance,
        errors=errors,
        request_id=request_id,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def as_problem(exc: AppError, instance: str | None = None) -> Problem:
    return Problem(type=f"/problems/{exc.code}", title=exc.title, status=exc.status, code=exc.code,
                   detail=exc.detail, instance=instance, errors=exc.errors)


def error_response(exc: AppError, instance: str | None = None) -> JSONResponse:
    return problem_response(
        exc.status, exc.code, exc.title, exc.detail, instance=instance, errors=exc.errors, headers=exc.headers,
    )


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    # pydantic's union/tagged-model names add noise to the location
    parts = [p for p in parts if not p.startswith("function-") and "[" not in p]
    return ".".join(parts) or "body"


def validation_errors(raw: list[dict[str, Any]]) -> list[FieldError]:
    out = []
    for err in raw:
        message = str(err.get("msg", "invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append(FieldError(field=_loc_to_field(err.get("loc", ())), message=message, code=str(err.get("type", "invalid"))))
    return out


def _allowed_methods(request: Request, offered: str | None) -> str:
    """Every method the path takes. Starlette names only the methods of the first route
    that matched the path, and a path can be served by two (GET and PATCH /v1/client): the
    contract has them all. Only 405s pay for this."""
    methods = {m.strip() for m in (offered or "").split(",") if m.strip()}
    path = request.url.path
    paths = request.app.openapi().get("paths", {})
    if path in paths:  # a fixed path (/v1/jobs/batch) is its own resource, not a {job_id}
        methods = {method.upper() for method in paths[path]}
        return ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
    for template, item in paths.items():
        pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[^/}]+\}", template))
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in item}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return problem_response(
            422, "validation_error", "The request is not valid", detail,
            instance=request.url.path, errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                 413: "payload_too_large"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request, (headers or {}).get("Allow"))}
        return problem_response(exc.status_code, code, str(exc.detail), instance=request.url.path, headers=headers)

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database_unavailable", error=type(exc).__name__, path=request.url.path)
        return problem_response(
            503, "database_unavailable", "The database is unreachable; retry shortly",
            instance=request.url.path, headers={"Retry-After": "5"},
        )

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        return await _database_down(request, exc)

    @app.exception_handler(PoolTimeoutError)
    async def _pool_timeout(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        return await _database_down(request, exc)

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _database_down(request, exc)
        raise exc


def problem_responses(*statuses: int, notes: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem+json errors (`notes`: this
    operation's own description of a status)."""
    descriptions = {
        400: "A value that cannot be stored (`unstorable_input`: NUL, lone surrogate, NaN/Infinity, "
        "nesting deeper than 32) or a body that is not JSON (`malformed_json`)",
        401: "Missing or invalid API key",
        403: "The API key may not do that",
        404: "No such resource for this client",
        409: "Conflict with the current state",
        408: "The request body stalled longer than COMETJOBS_BODY_TIMEOUT between chunks",
        410: "Gone: the resource was deleted",
        413: "The body is over its cap (COMETJOBS_MAX_JSON_BYTES, or COMETJOBS_MAX_UPLOAD_BYTES for uploads)",
        415: "The body's Content-Type is not the one this operation reads",
        422: "Validation failed; `errors` lists each bad field",
        429: "A quota of the client: `quota_exceeded`, `rate_limited` or `budget_exhausted`; see `Retry-After`",
        503: "A dependency (database, broker) is unavailable",
    }
    return {
        s: {
            "description": (notes or {}).get(s) or descriptions.get(s, "Error"),
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for s in statuses
    }
