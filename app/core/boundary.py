"""The one check between a request and Postgres, and the route class that applies it.

Postgres text and JSONB refuse NUL characters and lone UTF-16 surrogates, and JSONB has
no NaN or Infinity (which `json.loads` reads from `NaN`, `Infinity` and an overflowing
`1e400`). Deeply nested JSON is refused too: every payload we build from it is encoded
recursively. Whatever carries one of these is a 400 `unstorable_input` whose `errors`
name where it sits (`body.metadata.note`, `query.cursor`, `path.job_id`), before any
endpoint code runs. Every router uses `CheckedRoute`, which parses a JSON body once,
with this check, and hands the result to FastAPI to validate.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import Request, Response, params
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile

from app.core.errors import AppError, FieldError, problem_responses

MAX_DEPTH = 32
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A NUL or a lone surrogate reaches a decoded string only through an escape (\u0000,
# \ud800-\udfff) or, for a surrogate, raw UTF-8 bytes ED A0-BF, which json.loads lets through.
_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_INFINITE = (math.inf, -math.inf)


class UnstorableInput(AppError):
    status, code, title = 400, "unstorable_input", "The request carries a value that cannot be stored"


class MalformedJSON(AppError):
    status, code, title = 400, "malformed_json", "The request body is not valid JSON"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported content type"


def _shown(text: str) -> str:
    """A caller's string as it may appear in our answer: short, with what cannot be
    encoded escaped (a lone surrogate would break the response's own UTF-8)."""
    text = text if len(text) <= 64 else text[:64] + "..."
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _string_problem(text: str) -> tuple[str, str] | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "nul_character", "contains a NUL character (\\u0000)"
    return "lone_surrogate", "contains a lone UTF-16 surrogate"


def _storable(value: Any) -> bool:
    """Whether there is anything to refuse at all: no locations built, nothing allocated
    per node. Iterative, so a deep document is refused, not a RecursionError."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is str:
            if "\x00" in node or (not node.isascii() and _UNSTORABLE.search(node)):
                return False
        elif kind is float:
            if not math.isfinite(node):
                return False
        elif kind is dict:
            if depth >= MAX_DEPTH:
                return False
            for key, item in node.items():
                if "\x00" in key or (not key.isascii() and _UNSTORABLE.search(key)):
                    return False
                stack.append((item, depth + 1))
        elif kind is list:
            if depth >= MAX_DEPTH:
                return False
            stack.extend((item, depth + 1) for item in node)
    return True


def problems(value: Any, where: str) -> list[FieldError]:
    """Everything in `value` (a decoded JSON value, or a string) Postgres cannot store,
    each named by where it sits."""
    if _storable(value):
        return []
    found: list[FieldError] = []
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            bad = _string_problem(node)
            if bad:
                found.append(FieldError(field=path, message=bad[1], code=bad[0]))
        elif isinstance(node, float):
            if not math.isfinite(node):
                found.append(FieldError(
                    field=path, message="is NaN, Infinity or too large for a double", code="non_finite_number",
                ))
        elif isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                found.append(FieldError(
                    field=path, message=f"nests deeper than {MAX_DEPTH} levels", code="too_deep",
                ))
                continue
            if isinstance(node, list):
                stack.extend((item, f"{path}.{i}", depth + 1) for i, item in enumerate(node))
                continue
            for key, item in node.items():
                child = f"{path}.{_shown(key)}"
                bad = _string_problem(key)
                if bad:
                    found.append(FieldError(field=child, message=f"its key {bad[1]}", code=bad[0]))
                stack.append((item, child, depth + 1))
    return found


def check(value: Any, where: str) -> None:
    errors = problems(value, where)
    if errors:
        raise UnstorableInput("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def check_strings(items: Iterable[tuple[str, Any]], prefix: str) -> None:
    errors = []
    for name, value in items:
        if isinstance(value, str) and _UNSTORABLE.search(value):
            errors += problems(value, f"{prefix}.{_shown(name)}")
    if errors:
        raise UnstorableInput("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


class _NonFinite(Exception):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if value in _INFINITE:  # 1e400
        raise _NonFinite
    return value


def _refuse_constant(_name: str) -> float:  # NaN, Infinity, -Infinity
    raise _NonFinite


# One decoder for every request: json.loads(..., parse_float=...) would build one per call.
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_refuse_constant)


def loads(body: bytes) -> Any:
    """The request body as JSON, parsed once and checked. The walk that names what cannot
    be stored costs ~0.5 us a node, so it runs only when parsing met a non-finite number or
    the bytes could hold a NUL, a surrogate or nesting past MAX_DEPTH."""
    try:
        try:
            value = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
            suspect = ((b"\\u" in body and _ESCAPE.search(body) is not None) or b"\xed" in body
                       or body.count(b"[") + body.count(b"{") > MAX_DEPTH)
        except _NonFinite:
            value, suspect = json.loads(body), True  # again, to say where
    except json.JSONDecodeError as exc:
        raise MalformedJSON(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise UnstorableInput(f"the body nests deeper than {MAX_DEPTH} levels", errors=[
            FieldError(field="body", message=f"nests deeper than {MAX_DEPTH} levels", code="too_deep"),
        ]) from None
    except ValueError as exc:  # not UTF-8, or an integer of thousands of digits
        raise MalformedJSON(str(exc).split(";")[0]) from None
    if suspect:
        check(value, "body")
    return value


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class _CheckedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_checked_json"):
            self._checked_json = loads(await self.body())
        return self._checked_json


class CheckedRoute(APIRoute):
    """Path, query and body checked before FastAPI sees them; a JSON route refuses other
    content types (415). The answers it can add are documented on every operation."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        extra: list[int] = []
        if self.dependant.path_params or self.dependant.query_params or self.body_field is not None:
            extra.append(400)
        if self.body_field is not None:
            extra += [408, 413, 415]
        self.responses = {**problem_responses(*extra), **self.responses}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        has_body = self.body_field is not None
        form = self.body_field is not None and isinstance(self.body_field.field_info, params.Form)

        async def checked(request: Request) -> Response:
            request = _CheckedRequest(request.scope, request.receive)
            if request.path_params:
                check_strings(request.path_params.items(), "path")
            if request.scope["query_string"]:
                check_strings(request.query_params.multi_items(), "query")
            if has_body:
                await (_check_form(request) if form else _check_json(request))
            return await handle(request)

        return checked


async def _check_json(request: Request) -> None:
    if not await request.body():
        return  # FastAPI answers a missing body itself (422, or the defaults)
    media_type = _media_type(request)
    if not _is_json(media_type):
        raise UnsupportedMediaType(f"send the body as application/json, not {_shown(media_type) or 'untyped'}")
    await request.json()


async def _check_form(request: Request) -> None:
    media_type = _media_type(request)
    if media_type != "multipart/form-data":
        if not await request.body():
            return
        raise UnsupportedMediaType(f"send the file as multipart/form-data, not {_shown(media_type) or 'untyped'}")
    form = await request.form(max_files=1, max_fields=16)
    fields: list[tuple[str, Any]] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            fields += [(f"{name}.filename", value.filename), (f"{name}.content_type", value.content_type)]
        else:
            fields.append((name, value))
    check_strings(fields, "body")
