"""How much a request body may carry and how long it may take to arrive.

A body over its cap is a 413 from its Content-Length, before a byte of it is read (a
client sending `Expect: 100-continue` never sends it), or as soon as a body without a
length (chunked) passes the cap; nothing over the cap is ever buffered or spooled. A
body that stalls longer than BODY_TIMEOUT between chunks is a 408. Headers that arrive
too slowly are the server's business (`cometjobs/server.py`).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, RequestTimeout, error_response

UPLOAD_PATH = "/v1/uploads"
# Multipart framing around an upload: boundaries, part headers, a long file name.
MULTIPART_OVERHEAD = 64 * 1024
# The answer's last words to a client whose body we stop reading: the rest of it would
# otherwise hold the connection (and be read, only to be thrown away).
_CLOSE = {"Connection": "close"}


def _framing(scope: Scope) -> tuple[int | None, bool]:
    length, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked


class BodyLimits:
    def __init__(self, app: ASGIApp, *, json_bytes: int, upload_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.json_bytes = json_bytes
        self.upload_bytes = upload_bytes + MULTIPART_OVERHEAD
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, chunked = _framing(scope)
        if not length and not chunked:
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope["path"] == UPLOAD_PATH else self.json_bytes
        if length is not None and length > limit:
            refusal = PayloadTooLarge(f"the body is {length} bytes; this operation takes at most {limit}",
                                      headers=_CLOSE)
            await error_response(refusal, scope["path"])(scope, receive, send)
            return
        body = _Body(receive, send, limit, self.body_timeout)
        await self.app(scope, body.receive, body.send)


class _Body:
    def __init__(self, receive: Receive, send: Send, limit: int, timeout: float) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.timeout = timeout
        self.received = 0
        # True once no more of the body will be read: all of it came, or it was refused.
        self.done = False
        self.answered = False

    async def receive(self) -> Message:
        if self.done or self.answered:
            return await self._receive()
        try:
            async with asyncio.timeout(self.timeout):
                message = await self._receive()
        except TimeoutError:
            self.done = True
            raise RequestTimeout(f"no part of the body arrived for {self.timeout:g} s", headers=_CLOSE) from None
        if message["type"] != "http.request":
            self.done = True
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.limit:
            self.done = True
            raise PayloadTooLarge(f"the body passed {self.limit} bytes, the most this operation takes",
                                  headers=_CLOSE)
        self.done = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self.answered:
            self.answered = True
            if not self.done:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await self._send(message)
