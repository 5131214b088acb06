"""Structured logs: JSON in production, readable console in dev.

Every record passes a redaction step so API keys, webhook secrets, the
CometAPI key and presigned-URL signatures never reach a log sink.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import traceback
from typing import Any

import structlog

_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-+/=]+"),
    re.compile(r"(whsec_)[A-Za-z0-9+/=]+"),
    re.compile(r"(cj_(?:live|test)_)[A-Za-z0-9_\-]+"),
    re.compile(r"(?i)((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|sig)=)[^&\s\"']+"),
    # user:password@ in URLs (database, broker, webhook URLs)
    re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^/@:\s\"']*:)[^/@\s\"']+(?=@)"),
    # Postgres quotes the offending row or value after its message (`DETAIL:  Key
    # (idempotency_key)=(...)`, `CONTEXT:  JSON data, line 1: ...`), wherever psycopg's
    # text ends up (a worker's traceback, a task's failure).
    re.compile(r"(?m)^((?:DETAIL|CONTEXT|HINT|QUERY|WHERE):  ).*$"),
    # SQLAlchemy's own rendering of the bound values, should an engine not hide them.
    re.compile(r"(\[parameters: ).*?(?=\]\n|\]$)", re.S),
]
_SECRET_KEYS = {
    "api_key", "webhook_secret", "webhook_secret_previous", "secret", "authorization", "proxy-authorization",
    "cookie", "x-api-key", "password", "cometapi_key", "token", "access_token", "session_token",
    "secret_access_key", "aws_secret_access_key", "s3_secret_access_key", "console_secret", "csrf_token",
}
_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact this exact value wherever it appears (e.g. the CometAPI key)."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def redact(text: str) -> str:
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[REDACTED]", text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if key.lower() in _SECRET_KEYS and value:
        return "[REDACTED]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v) for v in value]
    return value


def _redact_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: _redact_value(k, v) for k, v in event_dict.items()}


_configured = False
_STAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)
# The pipeline's handler and renderer, for the access line (`log_access`).
_sink: tuple[logging.StreamHandler[Any], Any] | None = None
_ACCESS = logging.getLogger("cometjobs.api")


def log_access(**fields: Any) -> None:
    """The access line of one request, as the pipeline would write it (same stream, same
    renderer, same keys) without its machinery: a log record, seven processors and a
    formatter per request were 7% of a POST's CPU (bench-api, py-spy). Its fields are
    values our code chose (method, route template, status, duration); the request id in
    the context is bound already redacted (app/main.py), so there is nothing to redact."""
    if _sink is None or not _ACCESS.isEnabledFor(logging.INFO):
        return
    handler, renderer = _sink
    event = {"event": "http_request", **fields, **structlog.contextvars.get_contextvars(),
             "level": "info", "logger": _ACCESS.name}
    line = renderer(None, "info", _STAMP(None, "info", event)) + handler.terminator
    with handler.lock or contextlib.nullcontext():
        handler.stream.write(line)
        handler.flush()


def configure_logging(fmt: str = "console", level: str = "INFO", *, force: bool = False) -> None:
    """Route stdlib logging (uvicorn, celery) and structlog through one pipeline."""
    global _configured, _sink
    if _configured and not force:
        return
    _configured = True
    from app.core.settings import get_settings

    settings = get_settings()
    for setting in ("cometapi_key", "s3_secret_access_key", "console_secret"):
        value = getattr(settings, setting, None)
        if value:
            register_secret(value.get_secret_value())
    for variable in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        register_secret(os.environ.get(variable))

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _STAMP,
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        # Drop calls below the level first, so they never pay for redaction and rendering.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _sink = (handler, renderer)
    root.setLevel(level.upper())
    # Library warnings become log records too (JSON in production), not bare stderr text.
    logging.captureWarnings(True)
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _describe(exc: BaseException) -> str:
    """An exception's type, and for a database error the names Postgres gives
    (SQLSTATE, constraint, table, column): never its message, which may quote the request."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    diag = getattr(getattr(exc, "orig", exc), "diag", None)
    if diag is None:
        return name
    fields = {"sqlstate": diag.sqlstate, "constraint": diag.constraint_name, "table": diag.table_name,
              "column": diag.column_name}
    return name + " (" + ", ".join(f"{k}={v}" for k, v in fields.items() if v) + ")"


def safe_traceback(exc: BaseException) -> str:
    """The chain of exceptions with their stacks (file, line, function, source line),
    each named by `_describe`: what a developer needs, and no caller data."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for link in reversed(chain):
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(link.__traceback__))
        parts.append(_describe(link) + "\n")
    return "".join(parts).rstrip("\n")


__all__ = ["configure_logging", "log_access", "redact", "register_secret", "safe_traceback"]
