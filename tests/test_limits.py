"""Limits: bodies are capped (from Content-Length before a byte is read, or while a
length-less body streams), stored fields have sizes, every list has a bounded page, and
a client that sends its headers or body too slowly is cut off."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator

import pytest

from tests.support.procs import Service, cometjobs, free_port
from tests.support.waiting import wait_for

JOB = {"model": "sora-2", "input": {"prompt": "a paper boat"}}
JSON_CAP = 64 * 1024
UPLOAD_CAP = 256 * 1024
MULTIPART_OVERHEAD = 64 * 1024


@pytest.fixture
def caller(api, make_client):
    return make_client()


@pytest.fixture
def small_caps(clean) -> Iterator[None]:
    """Caps small enough to pass quickly, read by the app (and the upload check) from the environment."""
    from app.core.settings import get_settings

    wanted = {"COMETJOBS_MAX_JSON_BYTES": str(JSON_CAP), "COMETJOBS_MAX_UPLOAD_BYTES": str(UPLOAD_CAP)}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@pytest.fixture
def capped(small_caps, make_client):
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app()
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client, make_client()


CHUNK = 8192


def stream(app, path: str, headers: dict[str, str], prefix: bytes, total: int) -> tuple[int, dict, bytes, int]:
    """POST a body without a length (as a chunked one arrives), straight through the ASGI
    interface, counting the bytes the app pulled: (status, headers, body, pulled)."""
    pulled = 0
    messages: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        if pulled >= total:
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = prefix if pulled == 0 else b" " * CHUNK
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        messages.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in {**headers, "transfer-encoding": "chunked"}.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body, pulled


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    return body


class TestJsonBodyCap:
    def test_a_body_over_the_cap_streamed_without_a_length_is_413_once_it_passes_the_cap(self, capped):
        app, _, caller = capped
        status, headers, body, pulled = stream(
            app, "/v1/jobs", {**caller.headers, "content-type": "application/json"},
            b'{"model": "sora-2", "input": {"prompt": "x"}, "metadata": {"pad": "', 100 * JSON_CAP)
        assert status == 413
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert json.loads(body)["code"] == "payload_too_large"
        assert pulled <= JSON_CAP + CHUNK  # the rest was never read

    def test_a_body_under_the_cap_is_read(self, capped):
        _, client, caller = capped
        padded = json.dumps(JOB).encode() + b" " * (JSON_CAP - 100)
        response = client.post("/v1/jobs", content=padded,
                               headers={**caller.headers, "content-type": "application/json"})
        assert response.status_code == 202, response.text


class TestUploadCap:
    def test_a_streamed_upload_over_the_cap_is_413_and_read_no_further(self, capped):
        app, _, caller = capped
        head = (b'--b0und\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n")
        status, _, body, pulled = stream(
            app, "/v1/uploads", {**caller.headers, "content-type": "multipart/form-data; boundary=b0und"},
            head, 100 * UPLOAD_CAP)
        assert status == 413
        assert json.loads(body)["code"] == "payload_too_large"
        # Nothing past the cap was read, so nothing past it was spooled to disk either.
        assert pulled <= UPLOAD_CAP + MULTIPART_OVERHEAD + CHUNK

    def test_a_file_over_the_cap_within_the_framing_allowance_is_still_413(self, capped):
        _, client, caller = capped
        response = client.post("/v1/uploads", files={"file": ("big.bin", b"x" * (UPLOAD_CAP + 1))},
                               headers=caller.headers)
        assert_problem(response, 413, "payload_too_large")

    def test_a_file_at_the_cap_is_stored(self, capped):
        _, client, caller = capped
        response = client.post("/v1/uploads", files={"file": ("ok.bin", b"x" * UPLOAD_CAP)}, headers=caller.headers)
        assert response.status_code == 201, response.text
        assert response.json()["size_bytes"] == UPLOAD_CAP


class TestFieldLimits:
    def test_metadata_over_16_kib_is_422(self, api, caller):
        response = api.post("/v1/jobs", json={**JOB, "metadata": {"note": "x" * 16_400}}, headers=caller.headers)
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["field"] == "metadata"
        assert "16384" in body["errors"][0]["message"]
        response = api.post("/v1/jobs", json={**JOB, "metadata": {"note": "x" * 16_000}}, headers=caller.headers)
        assert response.status_code == 202, response.text

    def test_webhook_urls_over_2048_characters_are_422(self, api, caller):
        url = "https://example.com/" + "a" * 2048
        response = api.post("/v1/jobs", json={**JOB, "webhook_url": url}, headers=caller.headers)
        assert assert_problem(response, 422, "validation_error")["errors"][0]["field"] == "webhook_url"
        response = api.patch("/v1/client", json={"webhook_url": url}, headers=caller.headers)
        assert assert_problem(response, 422, "validation_error")["errors"][0]["field"] == "webhook_url"


class TestBoundedLists:
    @pytest.mark.parametrize(("path", "limit"), [
        ("/v1/jobs", 201), ("/v1/jobs/{id}/events", 1001), ("/v1/jobs/{id}/deliveries", 101),
    ])
    def test_every_list_refuses_a_page_over_its_bound(self, api, caller, path, limit):
        job = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        response = api.get(path.format(id=job["id"]), params={"limit": limit}, headers=caller.headers)
        assert_problem(response, 422, "validation_error")

    def test_deliveries_come_in_pages(self, api, make_client):
        from app.clients.models import Client
        from app.core.clock import utcnow
        from app.core.db import session_scope
        from app.webhooks.service import create_event

        caller = make_client(webhook_url="http://127.0.0.1:9/hook")
        job = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        with session_scope() as session:
            client = session.get(Client, caller["id"])
            made = [create_event(session, job_id=job["id"], client=client, url=client.webhook_url,
                                 event_type="job.running", data={}, now=utcnow()) for _ in range(3)]
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = api.get(f"/v1/jobs/{job['id']}/deliveries", params=params, headers=caller.headers).json()
            assert len(page["data"]) <= 2
            seen += [d["id"] for d in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == made
        bad = api.get(f"/v1/jobs/{job['id']}/deliveries", params={"cursor": "msg_nope"}, headers=caller.headers)
        assert_problem(bad, 422, "validation_error")

    def test_bulk_redelivery_takes_a_bounded_batch(self, api, make_client):
        admin = make_client("ops", is_admin=True)
        body = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
        response = api.post("/v1/admin/webhooks/redeliver", json={**body, "limit": 10_001}, headers=admin.headers)
        assert_problem(response, 422, "validation_error")
        response = api.post("/v1/admin/webhooks/redeliver", json=body, headers=admin.headers)
        assert response.json() == {"redelivered": 0, "ids": [], "skipped": [], "more": False}


# -- on a real socket, against `cometjobs api` with one-second timeouts ---------------

TIMEOUT = 1.0
# Generous: the suite runs on a loaded 2-core machine.
DEADLINE = 20.0


@pytest.fixture(scope="module")
def strict_api(database: str) -> Iterator[int]:
    from tests.conftest import TMP

    port = free_port()
    env = {**os.environ, "COMETJOBS_HEADER_TIMEOUT": str(TIMEOUT), "COMETJOBS_BODY_TIMEOUT": str(TIMEOUT)}
    service = Service("api-strict", cometjobs("api", "--port", str(port)), env, TMP).start()
    service.wait_http(f"http://127.0.0.1:{port}/healthz")
    yield port
    service.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.settimeout(DEADLINE)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (or the deadline fails the test)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# One `strict_api` process for the two classes below, not one per xdist worker.
@pytest.mark.xdist_group("strict-api")
class TestSlowClients:
    def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(self, strict_api):
        with connect(strict_api) as sock:
            status, headers, body = parse(read_all(sock))
        assert status == 408
        assert headers["connection"] == "close"
        assert json.loads(body)["code"] == "request_timeout"

    def test_headers_trickled_a_byte_at_a_time_are_cut_off(self, strict_api):
        trickle = iter(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 10_000)
        answer = bytearray()
        with connect(strict_api) as sock:
            sock.settimeout(0.2)

            def cut_off() -> bool:
                try:
                    sock.sendall(bytes([next(trickle)]))
                    answer.extend(sock.recv(65536))
                    return True  # an answer, or b"" for the close: the trickle is over
                except TimeoutError:
                    return False  # still open: the next byte

            wait_for(cut_off, timeout=DEADLINE, interval=0, message="the server to cut the trickle off")
            sock.settimeout(DEADLINE)
            answer.extend(read_all(sock))
        status, _, body = parse(bytes(answer))
        assert status == 408  # a byte every 0.2 s kept it busy; only the header timeout ends it
        assert json.loads(body)["code"] == "request_timeout"

    def test_a_stalled_body_is_a_408_problem_and_the_connection_closes(self, strict_api, make_client):
        caller = make_client()
        head = (f"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {caller['api_key']}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
        with connect(strict_api) as sock:
            sock.sendall(head + b'{"model": ')
            status, headers, body = parse(read_all(sock))
        assert status == 408
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert json.loads(body)["code"] == "request_timeout"

    def test_headers_past_64_kib_are_431(self, strict_api):
        with connect(strict_api) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
            status, _, body = parse(read_all(sock))
        assert status == 431
        assert json.loads(body)["code"] == "headers_too_large"

    @pytest.mark.parametrize("request_bytes", [
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /heal thz HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ])
    def test_what_the_parser_refuses_is_a_400_problem(self, strict_api, request_bytes):
        with connect(strict_api) as sock:
            sock.sendall(request_bytes)
            status, headers, body = parse(read_all(sock))
        assert status == 400
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "bad_request"

    def test_a_prompt_client_is_served_on_a_kept_alive_connection(self, strict_api):
        with connect(strict_api) as sock:
            for _ in range(2):
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                data = b""
                while b'"ok"' not in data:
                    chunk = sock.recv(65536)
                    assert chunk, data
                    data += chunk
                assert parse(data)[0] == 200


@pytest.mark.xdist_group("strict-api")
class TestCapsFromContentLength:
    @pytest.mark.parametrize(("path", "size"), [("/v1/jobs", 2 * 1024 * 1024), ("/v1/uploads", 21 * 1024 * 1024)])
    def test_a_declared_length_over_the_cap_is_413_before_the_body_is_sent(self, strict_api, path, size):
        head = (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                f"Content-Length: {size}\r\nExpect: 100-continue\r\n\r\n").encode()
        with connect(strict_api) as sock:
            sock.sendall(head)  # and not one byte of the body: the answer must not wait for it
            status, headers, body = parse(read_all(sock))
        assert status == 413
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "payload_too_large"
