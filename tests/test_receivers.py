"""Receivers in two languages, written as README's guide writes them (Node with the
`standardwebhooks` npm package, FastAPI with the Python one), each a real process
verifying real deliveries from the in-process pipeline: they accept every genuine
event (emoji, CJK, `1.0` in the body), order by `seq`, and reject every forgery."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.webhooks import signing
from tests.conftest import TMP
from tests.receivers import by_hand
from tests.support.procs import Service, free_port

HERE = Path(__file__).parent / "receivers"
NODE_PACKAGE = HERE / "node" / "node_modules" / "standardwebhooks"


def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not NODE_PACKAGE.exists():
        return "the standardwebhooks npm package is not installed: npm ci --prefix tests/receivers/node (.ci/run does)"
    return None


LANGUAGES = [
    pytest.param("node", marks=pytest.mark.skipif(_node_missing() is not None, reason=_node_missing() or "")),
    pytest.param("python"),
]


def _command(language: str, port: int) -> list[str]:
    if language == "node":
        return ["node", str(HERE / "node" / "receiver.js")]
    return [sys.executable, str(HERE / "python_receiver.py"), str(port)]


@pytest.fixture
def started() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for service in services:
        service.stop(timeout=5)


def _start(started: list[Service], language: str, secret: str) -> str:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WEBHOOK_SECRET": secret, "PORT": str(port)}
    service = Service(f"receiver-{language}-{port}", _command(language, port), env, TMP).start()
    started.append(service)
    service.wait_http(f"http://127.0.0.1:{port}/seen", timeout=30)
    return f"http://127.0.0.1:{port}/hook"


def _seen(url: str) -> dict:
    return httpx.get(url.replace("/hook", "/seen")).json()


def _forgeries(secret: str, delivery_id: str, body: str) -> list[tuple[str, dict[str, str], bytes]]:
    now = datetime.now(UTC)
    good = signing.headers([secret], delivery_id, now, body)
    raw = body.encode()
    other = signing.new_secret()
    reserialized = json.dumps(json.loads(body)).encode()  # what JSON.stringify(JSON.parse(body)) would do
    return [
        ("tampered body", good, raw.replace("🚣".encode(), "🚢".encode(), 1)),
        ("re-serialised body", good, reserialized),
        ("another secret", signing.headers([other], delivery_id, now, body), raw),
        ("stale timestamp", signing.headers([secret], delivery_id, now - timedelta(minutes=10), body), raw),
        ("future timestamp", signing.headers([secret], delivery_id, now + timedelta(minutes=10), body), raw),
        ("other webhook-id", {**good, "webhook-id": "msg_other"}, raw),
        ("no signature", {k: v for k, v in good.items() if k != "webhook-signature"}, raw),
        ("malformed signature", {**good, "webhook-signature": "v1,@@not base64@@"}, raw),
        ("signature of another scheme", {**good, "webhook-signature": "v2," + good["webhook-signature"][3:]}, raw),
        ("non-numeric timestamp", {**good, "webhook-timestamp": "soon"}, raw),
    ]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_receiver_verifies_real_deliveries_orders_them_and_rejects_forgeries(inproc, started, language):
    from tests.support.inprocess import SoraScript

    client = inproc.client("consumer")
    url = _start(started, language, client.webhook_secret)
    api, headers = inproc.api(), inproc.headers(client)
    SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": 50}, {"status": "completed"}])
    job_id = inproc.create_job(client, input={"prompt": "紙の船 🚣 drifting in the rain, naïve"},
                               webhook_url=url, webhook_events=["job.running"],
                               metadata={"price": 1.0, "tags": ["日本", "🌧"]})
    inproc.run_until_settled(job_id)
    inproc.deliver_nudged()
    inproc.deliver_nudged()
    seen = _seen(url)
    assert [(e["type"], e["seq"]) for e in seen["accepted"]] == [("job.running", 1), ("job.succeeded", 2)]
    assert seen["rejected"] == 0 and seen["jobs"] == {job_id: {"seq": 2, "status": "succeeded"}}

    # A redelivered job.running arrives after job.succeeded: verified, and ignored by seq.
    running, succeeded = inproc.deliveries(job_id)
    assert api.post(f"/v1/jobs/{job_id}/deliveries/{running.id}/redeliver", headers=headers).status_code == 200
    inproc.deliver_nudged()
    assert inproc.delivery(running.id).status == "delivered"
    seen = _seen(url)
    assert (seen["duplicates"], seen["jobs"][job_id]) == (1, {"seq": 2, "status": "succeeded"})

    # Header names in any case verify; every forgery is refused.
    genuine = signing.headers([client.webhook_secret], succeeded.id, datetime.now(UTC), succeeded.payload)
    shouting = {k.upper(): v for k, v in genuine.items()}
    assert httpx.post(url, content=succeeded.payload.encode(), headers=shouting).status_code == 204
    for name, forged_headers, body in _forgeries(client.webhook_secret, succeeded.id, succeeded.payload):
        answer = httpx.post(url, content=body, headers=forged_headers)
        assert answer.status_code == 401, (name, answer.status_code)
    assert _seen(url)["rejected"] == 10


def test_the_by_hand_verification_in_readme_accepts_genuine_deliveries_and_refuses_forgeries():
    source = (HERE / "by_hand.py").read_text()
    code = source[source.index("import base64"):].replace("  # noqa: E401, I001", "")
    assert code in (Path(__file__).parent.parent / "README.md").read_text(), "README's by-hand verify drifted"

    secret, body = signing.new_secret(), '{"id":"evt_1","data":{"prompt":"紙の船 🚣","price":1.0}}'
    genuine = signing.headers([signing.new_secret(), secret], "msg_1", datetime.now(UTC), body)
    assert by_hand.verify(secret, genuine, body.encode())
    assert by_hand.verify(secret, {k.upper(): v for k, v in genuine.items()}, body.encode())
    for name, forged_headers, forged_body in _forgeries(secret, "msg_1", body):
        assert not by_hand.verify(secret, forged_headers, forged_body), name
    assert not by_hand.verify("whsec_not base64!", genuine, body.encode())
