"""Talking to CometAPI: pooled clients and error classification.

Classification follows CometAPI's error guide: retry 429, 500/502/503/504/524
and timeouts (with backoff, honouring `Retry-After`); never retry 400, 401,
403, 404, redirects (a wrong path answers 301 or HTML) or a 500 whose
`error.code` is `invalid_request`. The request id found in an error message is
kept for support.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import aiohttp
import httpx

from app.core import aio
from app.core.http_headers import retry_after_seconds
from app.core.settings import Settings, get_settings
from app.providers.base import UpstreamRequest

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524}
_REQUEST_ID = re.compile(r"request[ _-]?id[:=\s]+([A-Za-z0-9_\-]+)", re.IGNORECASE)


class UpstreamError(Exception):
    """A failed CometAPI call, classified.

    `certain_not_processed` is True only when the upstream cannot have acted on
    the request (the connection never opened, or it answered with an error
    status); submit uses it to decide whether a retry could double-bill.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retryable: bool,
        retry_after: float | None = None,
        certain_not_processed: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retryable = retryable
        self.retry_after = retry_after
        self.certain_not_processed = certain_not_processed

    @property
    def error_code(self) -> str:
        if self.status is None:
            return "upstream_unreachable"
        return f"upstream_http_{self.status}"

    def as_event(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message[:500],
            "request_id": self.request_id,
            "retryable": self.retryable,
        }


def classify(status: int, headers: Mapping[str, str], text: str) -> UpstreamError:
    """An error answer (status, headers, body) as an UpstreamError, whichever client got it."""
    code = None
    message = ""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = err.get("code") or None
            message = str(err.get("message") or "")
        elif isinstance(err, str):
            message = err
        message = message or str(body.get("message") or body.get("detail") or body.get("description") or "")
    if not message:
        message = text[:300].strip() or f"HTTP {status}"
    match = _REQUEST_ID.search(message)
    request_id = match.group(1) if match else headers.get("x-request-id")
    if 300 <= status < 400:
        retryable = False
        message = f"unexpected redirect to {headers.get('location', '?')} (wrong base URL or path?)"
    elif status == 500 and code == "invalid_request":
        retryable = False
    else:
        retryable = status in RETRYABLE_STATUS
    return UpstreamError(
        message, status=status, code=str(code) if code else None, request_id=request_id,
        retryable=retryable, retry_after=retry_after_seconds(headers.get("retry-after")),
    )


def error_from_response(response: httpx.Response) -> UpstreamError:
    return classify(response.status_code, response.headers, response.text or response.reason_phrase or "")


def error_from_exception(exc: httpx.HTTPError) -> UpstreamError:
    # A connection that never opened cannot have created anything upstream.
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return UpstreamError(
        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        retryable=True,
        certain_not_processed=not_sent,
    )


def _timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        settings.upstream_read_timeout.total_seconds(),
        connect=settings.upstream_connect_timeout.total_seconds(),
    )


def _headers(settings: Settings) -> dict[str, str]:
    headers = {"User-Agent": "cometjobs/0.1", "Accept": "application/json"}
    if settings.cometapi_key:
        headers["Authorization"] = f"Bearer {settings.cometapi_key.get_secret_value()}"
    return headers


def _request_kwargs(req: UpstreamRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"params": req.params, "headers": req.headers}
    if req.timeout is not None:
        kwargs["timeout"] = req.timeout
    if req.files:
        kwargs["data"] = req.data or {}
        kwargs["files"] = [(f.field, (f.filename, f.open(), f.content_type)) for f in req.files]
    elif req.data is not None:
        # multipart/form-data even without files: the /v1/videos contract
        kwargs["files"] = [(k, (None, v)) for k, v in req.data.items()]
    elif req.json is not None:
        kwargs["json"] = req.json
    return kwargs


def parse_json(response: httpx.Response) -> Any:
    return _json_body(response.status_code, response.content)


def _json_body(status: int, content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        raise UpstreamError(
            f"upstream answered {status} with a body that is not JSON",
            status=status, code="bad_response", retryable=True, certain_not_processed=False,
        ) from None


class CometAPI:
    """A pooled synchronous client (submit, collect)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.http = httpx.Client(
            base_url=self.settings.cometapi_base_url,
            timeout=_timeout(self.settings),
            headers=_headers(self.settings),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self.settings.upstream_max_connections),
        )
        # Result links outside CometAPI (provider CDNs) get no credentials and may redirect.
        self.plain = httpx.Client(
            timeout=_timeout(self.settings), follow_redirects=True, max_redirects=5,
            headers={"User-Agent": "cometjobs/0.1"},
        )

    def call(self, req: UpstreamRequest) -> Any:
        try:
            response = self.http.request(req.method, req.path, **_request_kwargs(req))
        except httpx.HTTPError as exc:
            raise error_from_exception(exc) from exc
        if response.status_code >= 300:
            raise error_from_response(response)
        return parse_json(response)

    @contextmanager
    def stream(self, req: UpstreamRequest | None = None, url: str | None = None) -> Iterator[httpx.Response]:
        """Stream a result: a CometAPI request, or an absolute URL (no auth header sent)."""
        try:
            if req is not None:
                cm = self.http.stream(req.method, req.path, **_request_kwargs(req))
            elif url and url.startswith(self.settings.cometapi_base_url + "/"):
                cm = self.http.stream("GET", url)
            else:
                assert url is not None
                cm = self.plain.stream("GET", url)
            with cm as response:
                if response.status_code >= 300:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.HTTPError as exc:
            raise error_from_exception(exc) from exc

    def close(self) -> None:
        self.http.close()
        self.plain.close()


class AsyncCometAPI:
    """The batched poller's client: aiohttp, pooled per process.

    At poller volumes the client's CPU per request is the limit on one core; aiohttp
    spends about a tenth of httpx's per request here (bench.poll prints both).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.base = self.settings.cometapi_base_url
        self.session = aiohttp.ClientSession(
            headers=_headers(self.settings),
            connector=aiohttp.TCPConnector(limit=self.settings.poll_concurrency, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self.settings.upstream_connect_timeout.total_seconds(),
                sock_read=self.settings.upstream_read_timeout.total_seconds(),
            ),
            auto_decompress=True,
        )

    async def call(self, req: UpstreamRequest) -> Any:
        kwargs: dict[str, Any] = {"params": req.params, "headers": req.headers, "allow_redirects": False}
        if req.json is not None:
            kwargs["json"] = req.json
        elif req.data is not None:
            form = aiohttp.FormData()
            for key, value in req.data.items():
                form.add_field(key, value)
            kwargs["data"] = form
        if req.timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=req.timeout)
        try:
            async with self.session.request(req.method, self.base + req.path, **kwargs) as response:
                content = await response.read()
                if response.status >= 300:
                    raise classify(response.status, response.headers, content.decode(errors="replace"))
                return _json_body(response.status, content)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # A connection that never opened cannot have created anything upstream.
            not_sent = isinstance(exc, aiohttp.ClientConnectorError)
            raise UpstreamError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                retryable=True, certain_not_processed=not_sent,
            ) from exc

    async def aclose(self) -> None:
        await self.session.close()


class Upstream(Protocol):
    """What the pipeline needs from CometAPI, synchronously (submit, collect, late checks)."""

    def call(self, req: UpstreamRequest) -> Any: ...

    def stream(
        self, req: UpstreamRequest | None = None, url: str | None = None
    ) -> AbstractContextManager[StreamedBody]: ...


class StreamedBody(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]: ...


class AsyncUpstream(Protocol):
    """... and asynchronously (the batched poller)."""

    async def call(self, req: UpstreamRequest) -> Any: ...

    async def aclose(self) -> None: ...


_sync: tuple[int, CometAPI] | None = None
_substitute: list[tuple[Upstream, AsyncUpstream]] = []


def sync_client() -> Upstream:
    """One pooled client per process (re-created after a fork), unless substituted."""
    global _sync
    if _substitute:
        return _substitute[0][0]
    if _sync is None or _sync[0] != os.getpid():
        _sync = (os.getpid(), CometAPI())
    return _sync[1]


def async_client() -> AsyncUpstream:
    """The process's pooled AsyncCometAPI (made inside the running loop), unless substituted."""
    if _substitute:
        return _substitute[0][1]
    return aio.loop_resource("upstream", AsyncCometAPI)


@contextmanager
def use_upstream(sync: Upstream, asynchronous: AsyncUpstream) -> Iterator[None]:
    """Talk to a stand-in instead of CometAPI (in-process tests)."""
    _substitute.insert(0, (sync, asynchronous))
    try:
        yield
    finally:
        _substitute.remove((sync, asynchronous))


def reset_clients() -> None:
    global _sync
    _sync = None
