"""Webhook URLs at the edges, end to end: refused at submit, and refused again when a
name resolves to a forbidden address at send time (a real worker, a real receiver).
Every delivery branch (retries, Retry-After, redirects, dead and redelivered, 410,
ordering, subscriptions, rotation) is proven in-process in tests/pipeline/test_webhooks.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import TMP
from tests.support.stack import Stack
from tests.support.waiting import wait_for


class TestSsrfAtSubmit:
    @pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:8080/x",
                                     "http://metadata.google.internal/", "file:///etc/passwd"])
    def test_unsafe_webhook_url_is_422(self, api, make_client, url):
        client = make_client()
        response = api.post("/v1/jobs", json={"model": "sora-2", "input": {"prompt": "x"}, "webhook_url": url},
                            headers=client.headers)
        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["field"] == "webhook_url"
        assert problem["errors"][0]["code"] == "unsafe_url"

    def test_unsafe_client_url_is_422(self, api, make_client):
        client = make_client()
        response = api.patch("/v1/client", json={"webhook_url": "http://169.254.169.254/"}, headers=client.headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "unsafe_url"


@pytest.fixture(scope="module")
def rebinding_stack(database: str) -> Iterator[Stack]:
    """The API allows loopback (so `localhost` passes at submit); the worker does not,
    as if the name had been re-pointed at an internal address after the check. No
    emulator: the job is canceled at once, and `job.canceled` is the event sent."""
    stack = Stack("ssrf", TMP, dict(os.environ))
    try:
        stack.create_database()
        stack.start_api()
        stack.env["COMETJOBS_WEBHOOK_ALLOWED_CIDRS"] = "10.0.0.0/8"
        stack.start_worker()
        yield stack
    finally:
        stack.stop()


class TestSsrfAtSend:
    def test_a_name_resolving_to_a_refused_address_is_refused_when_sent(self, rebinding_stack, receiver):
        stack = rebinding_stack
        client = stack.create_client("svc")
        url = f"http://localhost:{receiver.port}/hook"
        created = stack.http.post("/v1/jobs", json={"model": "sora-2", "input": {"prompt": "x"}, "webhook_url": url},
                                  headers=client["headers"])
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        assert stack.http.post(f"/v1/jobs/{job_id}/cancel", headers=client["headers"]).status_code == 200

        def attempted() -> dict | None:
            found = stack.http.get(f"/v1/jobs/{job_id}/deliveries", headers=client["headers"]).json()["data"]
            # Settled: the refused attempt is recorded on the delivery, not only in its log.
            return found[0] if found and found[0]["attempt_log"] and found[0]["state"] != "pending" else None

        delivery = wait_for(attempted, timeout=90, message=lambda: f"an attempt\n{stack.logs()}")
        assert delivery["event_type"] == "job.canceled"
        [attempt] = delivery["attempt_log"][:1]
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("refused: ")
        assert "is a private or loopback address" in attempt["error"]
        assert delivery["state"] in ("retrying", "dead")  # refused sends are failures, retried on schedule
        assert receiver.requests == []
