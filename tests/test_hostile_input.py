"""Hostile input never reaches a 500: what Postgres cannot store is a 400 naming where
it sits, malformed JSON says where it broke, declared integers take integers, webhook
hosts must be DNS names, absurd ranges are ignored or refused, and whatever still
breaks is a problem+json 500 with a request id, logged without the caller's data, on a
connection that stays usable."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading

import pytest
import uvicorn
from fastapi import FastAPI

from tests.support.procs import free_port
from tests.support.waiting import wait_for

JOB = {"model": "sora-2", "input": {"prompt": "a paper boat"}}


@pytest.fixture
def caller(api, make_client):
    return make_client()


def post_raw(api, caller, raw: bytes, path: str = "/v1/jobs", **headers: str):
    return api.post(path, content=raw, headers={**caller.headers, "content-type": "application/json", **headers})


def assert_unstorable(response, field: str, code: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "unstorable_input"
    assert {"field": field, "code": code} in [{"field": e["field"], "code": e["code"]} for e in body["errors"]]


def job_count(api, caller) -> int:
    return len(api.get("/v1/jobs", headers=caller.headers).json()["data"])


class TestUnstorableBody:
    @pytest.mark.parametrize(("raw", "field", "code"), [
        (r'{"note": "a\u0000b"}', "body.metadata.note", "nul_character"),
        (r'{"a\u0000": 1}', "body.metadata.a\\u0000", "nul_character"),
        (r'{"note": "\ud800"}', "body.metadata.note", "lone_surrogate"),
        (r'{"note": "\udfff tail"}', "body.metadata.note", "lone_surrogate"),
        ('{"n": NaN}', "body.metadata.n", "non_finite_number"),
        ('{"n": Infinity}', "body.metadata.n", "non_finite_number"),
        ('{"n": -Infinity}', "body.metadata.n", "non_finite_number"),
        ('{"n": 1e400}', "body.metadata.n", "non_finite_number"),
        ('{"n": 2E308}', "body.metadata.n", "non_finite_number"),
        ('{"n": 1' + "0" * 400 + '.5}', "body.metadata.n", "non_finite_number"),
        (r'{"note": "\uDBFF"}', "body.metadata.note", "lone_surrogate"),
        ('{"list": [1, 2, [3, -1e999]]}', "body.metadata.list.2.1", "non_finite_number"),
        ('{"deep": ' + "[" * 40 + "]" * 40 + "}", "body.metadata.deep." + ".".join(["0"] * 30), "too_deep"),
    ])
    def test_metadata_that_postgres_cannot_store_is_400_naming_it(self, api, caller, raw, field, code):
        body = '{"model": "sora-2", "input": {"prompt": "x"}, "metadata": ' + raw + "}"
        assert_unstorable(post_raw(api, caller, body.encode()), field, code)
        assert job_count(api, caller) == 0

    def test_input_and_webhook_url_are_checked_too(self, api, caller):
        body = r'{"model": "sora-2", "input": {"prompt": "a\u0000"}, "webhook_url": "http://x\u0000.example/"}'
        response = post_raw(api, caller, body.encode())
        assert_unstorable(response, "body.input.prompt", "nul_character")
        assert_unstorable(response, "body.webhook_url", "nul_character")

    def test_a_raw_surrogate_in_utf8_bytes_is_refused(self, api, caller):
        body = b'{"model": "sora-2", "input": {"prompt": "\xed\xa0\x80"}}'
        assert_unstorable(post_raw(api, caller, body), "body.input.prompt", "lone_surrogate")

    def test_every_json_route_checks_its_body(self, api, caller):
        response = api.patch("/v1/client", content=rb'{"webhook_url": "http://a\u0000/"}',
                             headers={**caller.headers, "content-type": "application/json"})
        assert_unstorable(response, "body.webhook_url", "nul_character")
        response = post_raw(api, caller, b'{"grace_seconds": NaN}', "/v1/client/webhook-secret/rotate")
        assert_unstorable(response, "body.grace_seconds", "non_finite_number")

    def test_nesting_beyond_the_parser_is_400_not_a_recursion_error(self, api, caller):
        body = b'{"model": "sora-2", "input": {"prompt": "x"}, "metadata": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
        response = post_raw(api, caller, body)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "unstorable_input"


class TestMalformedJson:
    def test_says_the_line_and_column(self, api, caller):
        response = post_raw(api, caller, b'{\n  "model": "sora-2",\n  "input": {"prompt": "x"\n}')
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "malformed_json"
        assert body["detail"].startswith("line 4, column 2: ")
        assert "errors" not in body

    @pytest.mark.parametrize("raw", [b"\xff\xfe not utf-8", b'{"n": ' + b"9" * 5000 + b"}"])
    def test_undecodable_bodies_are_400(self, api, caller, raw):
        response = post_raw(api, caller, raw)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "malformed_json"


class TestContentType:
    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
    def test_a_json_route_refuses_other_bodies_with_415(self, api, caller, content_type):
        headers = {**caller.headers, **({"content-type": content_type} if content_type else {})}
        response = api.post("/v1/jobs", content=json.dumps(JOB).encode(), headers=headers)
        assert response.status_code == 415, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unsupported_media_type"

    def test_json_suffix_types_are_json(self, api, caller):
        response = post_raw(api, caller, json.dumps(JOB).encode(), **{"content-type": "application/vnd.x+json"})
        assert response.status_code == 202, response.text

    def test_uploads_take_multipart_only(self, api, caller):
        response = api.post("/v1/uploads", content=b'{"file": "x"}',
                            headers={**caller.headers, "content-type": "application/json"})
        assert response.status_code == 415

    def test_a_file_name_with_nul_is_400(self, api, caller):
        body = (b'--b0und\r\nContent-Disposition: form-data; name="file"; filename="a\x00.png"\r\n'
                b"Content-Type: image/png\r\n\r\ndata\r\n--b0und--\r\n")  # clients escape the NUL
        response = api.post("/v1/uploads", content=body,
                            headers={**caller.headers, "content-type": "multipart/form-data; boundary=b0und"})
        assert_unstorable(response, "body.file.filename", "nul_character")


class TestPathQueryAndHeaders:
    def test_nul_in_a_path_parameter_is_400(self, api, caller):
        for path in ("/v1/jobs/job_%00", "/v1/jobs/job_%00/events", "/v1/jobs/x/artifacts/%00"):
            response = api.get(path, headers=caller.headers)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["errors"][0]["code"] == "nul_character"
        response = api.post("/v1/jobs/job_%00/cancel", headers=caller.headers)
        assert_unstorable(response, "path.job_id", "nul_character")

    def test_nul_in_a_query_parameter_is_400(self, api, caller):
        assert_unstorable(api.get("/v1/jobs?cursor=job_%00", headers=caller.headers), "query.cursor", "nul_character")
        assert_unstorable(api.get("/v1/jobs?model=%00", headers=caller.headers), "query.model", "nul_character")

    @pytest.mark.parametrize("query", [
        "after=99999999999999999999", "after=-1", "after=1e400", "after=true", "limit=9223372036854775808",
    ])
    def test_query_integers_beyond_64_bits_or_not_integers_are_422(self, api, caller, query):
        job = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        response = api.get(f"/v1/jobs/{job['id']}/events?{query}", headers=caller.headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"

    def test_empty_idempotency_key_is_422(self, api, caller):
        for _ in range(2):  # once treated as absent, the second one collided: a 409
            response = api.post("/v1/jobs", json=JOB, headers={**caller.headers, "Idempotency-Key": ""})
            assert response.status_code == 422, response.text
            assert "Idempotency-Key" in response.json()["errors"][0]["field"]
        assert job_count(api, caller) == 0


class TestMethods:
    def test_a_405_lists_every_method_the_path_takes(self, api, caller):
        response = api.request("OPTIONS", "/v1/client", headers=caller.headers)
        assert response.status_code == 405
        assert response.headers["content-type"] == "application/problem+json"
        assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "PATCH"}


class TestDeclaredIntegers:
    @pytest.mark.parametrize(("model", "field", "value"), [
        ("flux-dev", "steps", True), ("flux-dev", "seed", "7"), ("flux-dev", "seed", 2**64),
        ("kling-image", "n", True), ("flux-dev", "guidance", True),
    ])
    def test_booleans_strings_and_huge_numbers_are_not_integers(self, api, caller, model, field, value):
        response = api.post("/v1/jobs", json={"model": model, "input": {"prompt": "x", field: value}},
                            headers=caller.headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == f"input.{field}"

    def test_client_settings_take_integers_only(self, api, caller):
        for days in (True, 0, 3651, 2**64):
            assert api.patch("/v1/client", json={"retention_days": days}, headers=caller.headers).status_code == 422
        for grace in (True, "60", 7 * 86400 + 1):
            response = api.post("/v1/client/webhook-secret/rotate", json={"grace_seconds": grace},
                                headers=caller.headers)
            assert response.status_code == 422, grace


class TestDeclaredDateTimes:
    def test_a_number_is_not_a_date_time(self, api, make_client):
        admin = make_client("ops", is_admin=True)
        body = {"start": 0, "end": "2026-01-02T00:00:00Z"}
        response = api.post("/v1/admin/webhooks/redeliver", json=body, headers=admin.headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "start"


class TestWebhookHosts:
    @pytest.mark.parametrize("url", [
        "http://a..b/hook", "http://" + "a" * 64 + ".example.com/", "http://" + ".".join(["a" * 50] * 6) + "/",
        "http://.example.com/", "http://\u00ad.example.com/",
    ])
    def test_hosts_that_are_not_dns_names_are_422(self, api, caller, url):
        response = api.post("/v1/jobs", json={**JOB, "webhook_url": url}, headers=caller.headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0] == {"field": "webhook_url", "code": "unsafe_url",
                                                "message": response.json()["errors"][0]["message"]}
        response = api.patch("/v1/client", json={"webhook_url": url}, headers=caller.headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["code"] == "unsafe_url"


class TestAbsurdRanges:
    DATA = bytes(range(256)) * 4

    @pytest.fixture
    def url(self, api, caller):
        from tests.test_api import store_artifact

        job_id = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()["id"]
        store_artifact(job_id, self.DATA)
        return f"/v1/jobs/{job_id}/artifacts/video"

    @pytest.mark.parametrize("header", [
        "bytes=5-2", "bytes=99999999999999999999999999-", "bytes=0-99999999999999999999999999",
        "bytes=-" + "9" * 5000, "bytes=0-1,2-3", "bytes=" + ",".join(["0-1"] * 500), "bytes=", "bytes=-",
        "pages=1-2", "garbage", b"bytes=\xb2-\xb3",
    ])
    def test_are_ignored_and_the_whole_object_served(self, api, caller, url, header):
        response = api.get(url, headers={**caller.headers, "Range": header})
        assert response.status_code == 200, response.text
        assert response.content == self.DATA

    @pytest.mark.parametrize("header", ["bytes=999999999999999999-", "bytes=1024-", "bytes=-0"])
    def test_a_range_past_the_end_is_416(self, api, caller, url, header):
        response = api.get(url, headers={**caller.headers, "Range": header})
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{len(self.DATA)}"


# -- whatever still breaks -----------------------------------------------------------

SECRET_URL = "https://hooks.example.com/receive?token=caller-token-5ac1"
SECRET_META = "caller-metadata-77e9"


def crash() -> None:
    raise RuntimeError(f"something broke while handling {SECRET_META}")


def a_job(client_id: str, **fields):  # type: ignore[no-untyped-def]
    from app.core.clock import utcnow
    from app.core.ids import new_id
    from app.jobs.models import Job

    now = utcnow()
    return Job(**{
        "id": new_id("job"), "client_id": client_id, "request_fingerprint": "x", "model": "sora-2",
        "family": "sora", "kind": "video", "input": {"prompt": "x"}, "meta": {}, "webhook_url": SECRET_URL,
        "webhook_events": [], "storage_prefix": "p", "status": "queued", "progress": 0, "due_at": now,
        "queue_deadline_at": now, "deadline_at": now, "timeout_at": now, "created_at": now, "updated_at": now,
        "status_changed_at": now, "progress_at": now, **fields,
    })


def bad_insert() -> None:
    """An INSERT Postgres refuses, carrying caller data: what the boundary keeps out of
    the real routes, done here on purpose."""
    from app.clients.service import create
    from app.core.db import session_scope

    with session_scope() as session:
        client = create(session, "crash-test").client
        session.add(a_job(client.id, meta={"note": SECRET_META + "\x00"}))


@pytest.fixture
def broken_app(clean) -> FastAPI:
    """The real app plus two test-only routes that fail the way a bug would."""
    from app.main import create_app

    app = create_app()
    app.add_api_route("/_test/crash", crash)
    app.add_api_route("/_test/bad-insert", bad_insert)
    return app


@pytest.fixture
def log_lines():
    """Every log record as the production formatter writes it (JSON)."""
    import structlog

    from app.core.logging import configure_logging

    configure_logging("json", "INFO")  # as the app does; once per process
    root = logging.getLogger()
    ours = [h.formatter for h in root.handlers if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)]
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(ours[0])
    root.addHandler(handler)
    yield lambda: [line for line in buffer.getvalue().splitlines() if line.strip()]
    root.removeHandler(handler)


class TestLogsStayClean:
    def test_a_failed_insert_logs_no_sql_parameters_and_no_caller_data(self, broken_app, log_lines):
        from fastapi.testclient import TestClient

        with TestClient(broken_app) as client:
            response = client.get("/_test/bad-insert")
        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
        text = "\n".join(log_lines())
        assert "internal_error" in text and "sqlstate=22P05" in text
        for secret in (SECRET_URL, "caller-token-5ac1", SECRET_META, "hooks.example.com", "DETAIL", "[parameters"):
            assert secret not in text, secret

    def test_a_unique_violation_logged_with_its_traceback_names_no_values(self, make_client, log_lines):
        """As a worker or Celery logs a failed task: the whole exception, message included."""
        import structlog
        from sqlalchemy.exc import IntegrityError

        from app.core.db import session_scope

        caller = make_client()
        key = "caller-idempotency-key-" + SECRET_META
        with session_scope() as session:
            session.add(a_job(caller["id"], idempotency_key=key))
        with pytest.raises(IntegrityError) as raised:
            with session_scope() as session:
                session.add(a_job(caller["id"], idempotency_key=key))
        assert "uq_jobs_client_id_idempotency_key" in str(raised.value)
        assert SECRET_URL not in str(raised.value)  # the engine hides bound values ...
        try:
            raise raised.value
        except IntegrityError:
            structlog.get_logger("app.jobs.submit").exception("submit_crashed")
        text = "\n".join(log_lines())
        assert "submit_crashed" in text and "uq_jobs_client_id_idempotency_key" in text
        for secret in (key, SECRET_URL, "caller-token-5ac1", SECRET_META):  # ... and logs drop DETAIL lines
            assert secret not in text, secret


class TestInternalErrors:
    def test_an_unexpected_error_is_a_problem_500_with_the_request_id(self, broken_app, log_lines):
        from fastapi.testclient import TestClient

        with TestClient(broken_app, raise_server_exceptions=True) as client:
            response = client.get("/_test/crash", headers={"X-Request-ID": "req-crash-1"})
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == "req-crash-1"
        body = response.json()
        assert body["code"] == "internal_error"
        assert body["request_id"] == "req-crash-1"
        assert SECRET_META not in response.text
        errors = [json.loads(line) for line in log_lines() if '"internal_error"' in line]
        assert len(errors) == 1, log_lines()
        assert errors[0]["request_id"] == "req-crash-1"
        assert errors[0]["error"] == "RuntimeError"
        assert "in crash" in errors[0]["exception"]  # the stack is there ...
        assert SECRET_META not in "\n".join(log_lines())  # ... the message is not


@pytest.fixture
def served(broken_app):
    """The app behind a real uvicorn socket (the protocol `cometjobs api` uses), in this process."""
    from cometjobs.server import GuardedHttpToolsProtocol

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        broken_app, host="127.0.0.1", port=port, http=GuardedHttpToolsProtocol, log_config=None,
        lifespan="off", access_log=False,
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, message="uvicorn to start")
    yield port
    server.should_exit = True
    thread.join(timeout=30)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


class TestKeepAliveAfterAnError:
    def test_the_connection_answers_the_next_request_after_a_500(self, served):
        with socket.create_connection(("127.0.0.1", served), timeout=30) as sock:
            sock.sendall(b"GET /_test/crash HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = read_response(sock)
            assert status == 500
            assert json.loads(body)["request_id"] == headers["x-request-id"]
            assert "close" not in headers.get("connection", "")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _, body = read_response(sock)
            assert status == 200
            assert json.loads(body)["status"] == "ok"
