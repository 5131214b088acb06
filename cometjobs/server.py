"""How `cometjobs api` serves HTTP: uvicorn's httptools protocol, plus the two bounds it
leaves open, and problem+json for what it refuses itself. A connection whose request line and headers are not complete within
HEADER_TIMEOUT of its first byte (or of being opened) gets a 408 and is closed: uvicorn
times out idle keep-alive connections, not one that trickles its headers a byte at a
time (slowloris). And httptools buffers headers of any size, so past MAX_HEADER_BYTES
the answer is a 431 and the connection is closed. Bodies are bounded by the app
(`app/core/limits.py`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.errors import PROBLEM_MEDIA_TYPE

# The request line and all headers together; a few KiB in practice, 8-16 KiB is common.
MAX_HEADER_BYTES = 64 * 1024


def _raw_problem(status: int, phrase: str, code: str, detail: str) -> bytes:
    body = json.dumps({"type": f"/problems/{code}", "title": phrase, "status": status, "code": code,
                       "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {PROBLEM_MEDIA_TYPE}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class _HeadersTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from app.core.settings import get_settings

        self.header_timeout = get_settings().header_timeout.total_seconds()
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """What httptools cannot parse (a NUL in a header, a bad request line), as problem+json
        like every other answer; and the 431, which reaches uvicorn as a parser error raised by
        `_count`."""
        self._disarm()
        if self._too_large:
            answer = _raw_problem(431, "Request Header Fields Too Large", "headers_too_large",
                                  f"the request line and headers passed {MAX_HEADER_BYTES} bytes")
        else:
            answer = _raw_problem(400, "Bad Request", "bad_request", "the request is not valid HTTP/1.1")
        self.transport.write(answer)
        self.transport.close()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._too_large = True
            raise _HeadersTooLarge

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        # Only between answers: a pipelined request's trickle must not cut into the one before.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_raw_problem(
                408, "Request Timeout", "request_timeout",
                f"the request line and headers did not arrive within {self.header_timeout:g} s"))
        self.transport.close()


def run_api(host: str, port: int, workers: int) -> None:
    import os

    import uvicorn

    from app.main import SERVING_PROCESS

    os.environ[SERVING_PROCESS] = "1"  # inherited by uvicorn's worker processes

    uvicorn.run(
        "app.main:create_app", factory=True, host=host, port=port, workers=workers,
        log_config=None, access_log=False, proxy_headers=True, http=GuardedHttpToolsProtocol,
    )
