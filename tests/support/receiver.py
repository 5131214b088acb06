"""A real webhook receiver on loopback that records what arrives."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.waiting import wait_for


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next status in `script` (then `default`).

    A script entry may also be `(status, {header: value})`. Requests to paths under
    `/hold` are recorded, then held open until `release()`. `port` 0 picks a free
    port; pass an old receiver's port to bring "the same endpoint" back up.
    """

    host: str = "127.0.0.1"
    script: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    default: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    body: bytes = b"ok"

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with owner._lock:
                    reply = owner.script.pop(0) if owner.script else owner.default
                    status, extra = reply if isinstance(reply, tuple) else (reply, {})
                    owner.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                if self.path.startswith("/hold"):
                    owner._released.wait(timeout=300)
                try:
                    self.send_response(status)
                    for key, value in {**owner.headers, **extra}.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(len(owner.body)))
                    self.end_headers()
                    self.wfile.write(owner.body)
                except OSError:
                    pass  # the sender gave up (a timeout): nothing to answer

            def log_message(self, *_args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self._released = threading.Event()
        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    @property
    def hold_url(self) -> str:
        return f"http://{self.host}:{self.port}/hold"

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def for_job(self, job_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.json.get("data", {}).get("id") == job_id]

    def wait_for_job(self, job_id: str, count: int = 1, timeout: float = 60) -> list[Received]:
        return wait_for(
            lambda: (lambda got: got if len(got) >= count else None)(self.for_job(job_id)),
            timeout=timeout, message=f"{count} webhook(s) for {job_id}",
        )
