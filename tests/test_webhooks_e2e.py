"""Webhooks end to end: real API, Celery worker and beat processes, and real HTTP
receivers on loopback. The retry schedule is shrunk to 0.3, 0.6, 1 s (4 attempts)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import TMP
from tests.helpers import get_job, submit, verify_signature, wait_terminal
from tests.support.procs import cometjobs
from tests.support.receiver import Receiver
from tests.support.stack import Stack
from tests.support.waiting import wait_for

ATTEMPTS = 4  # one plus the three retries of COMETJOBS_WEBHOOK_RETRY_SCHEDULE=0.3,0.6,1


def deliveries(http, client, job_id: str) -> list[dict]:
    response = http.get(f"/v1/jobs/{job_id}/deliveries", headers=client.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def wait_delivery(http, client, job_id: str, event_type: str, status: str, timeout: float = 60) -> dict:
    def probe() -> dict | None:
        found = [d for d in deliveries(http, client, job_id) if d["event_type"] == event_type]
        return found[0] if found and found[0]["status"] == status else None

    return wait_for(probe, timeout=timeout, message=f"{event_type} delivery of {job_id} to be {status}")


def webhook_state(http, client, job_id: str) -> dict:
    return get_job(http, client, job_id)["webhook"]


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


@pytest.fixture
def down_url() -> str:
    """A loopback URL nobody listens on (yet)."""
    gone = Receiver().start()
    gone.stop()
    return gone.url


class TestRetriesUntilSuccess:
    def test_fourth_attempt_delivers_the_same_signed_event(self, http, make_client, receiver):
        receiver.script = [500, 500, 500]
        client = make_client(webhook_url=receiver.url)
        job = wait_terminal(http, client, submit(http, client)["id"])

        hooks = receiver.wait_for_job(job["id"], count=ATTEMPTS)
        assert [h.status for h in hooks] == [500, 500, 500, 200]
        assert len({h.headers["webhook-id"] for h in hooks}) == 1
        assert len({h.json["id"] for h in hooks}) == 1
        for hook in hooks:
            assert Webhook(client["webhook_secret"]).verify(hook.body, hook.headers)["type"] == "job.succeeded"
            assert verify_signature(client["webhook_secret"], hook.headers, hook.body)

        delivery = wait_delivery(http, client, job["id"], "job.succeeded", "delivered")
        assert delivery["id"] == hooks[0].headers["webhook-id"]
        assert delivery["attempts"] == ATTEMPTS
        log = delivery["attempt_log"]
        assert [a["attempt"] for a in log] == [1, 2, 3, 4]
        assert [a["status_code"] for a in log] == [500, 500, 500, 200]
        assert [a["error"] for a in log] == ["HTTP 500"] * 3 + [None]
        assert all(a["response_body"] == "ok" and a["latency_ms"] >= 0 for a in log)
        state = webhook_state(http, client, job["id"])
        assert (state["state"], state["event_type"], state["attempts"]) == ("delivered", "job.succeeded", 4)


class TestRetrying:
    def test_retry_after_is_honoured_and_shown_on_the_job(self, http, make_client, receiver):
        receiver.script = [(503, {"retry-after": "30"})]
        client = make_client(webhook_url=receiver.url)
        job = wait_terminal(http, client, submit(http, client)["id"])

        state = wait_for(lambda: (lambda s: s if s and s["state"] == "retrying" else None)(
            webhook_state(http, client, job["id"])), timeout=60, message="webhook state retrying")
        [delivery] = deliveries(http, client, job["id"])
        [first] = delivery["attempt_log"]
        assert (state["attempts"], state["last_status_code"], state["last_error"]) == (1, 503, "HTTP 503")
        assert parse(state["next_attempt_at"]) >= parse(first["started_at"]) + timedelta(seconds=29)
        assert delivery["state"] == "retrying" and delivery["status"] == "pending"

    def test_redelivering_a_pending_delivery_is_409(self, http, make_client, receiver):
        receiver.script = [(503, {"retry-after": "30"})]
        client = make_client(webhook_url=receiver.url)
        job = wait_terminal(http, client, submit(http, client)["id"])
        wait_for(lambda: webhook_state(http, client, job["id"])["state"] == "retrying", timeout=60,
                 message="webhook retrying")
        [delivery] = deliveries(http, client, job["id"])
        response = http.post(f"/v1/jobs/{job['id']}/deliveries/{delivery['id']}/redeliver", headers=client.headers)
        assert response.status_code == 409
        assert response.json()["code"] == "delivery_pending"


class TestRedirects:
    def test_a_redirect_is_a_failed_attempt_and_is_not_followed(self, http, make_client, receiver):
        receiver.script = [(307, {"location": f"http://127.0.0.1:{receiver.port}/moved"})]
        client = make_client(webhook_url=receiver.url)
        job = wait_terminal(http, client, submit(http, client)["id"])
        delivery = wait_delivery(http, client, job["id"], "job.succeeded", "delivered")
        log = delivery["attempt_log"]
        assert [a["status_code"] for a in log] == [307, 200]
        assert log[0]["error"].startswith("redirect 307 to http://127.0.0.1")
        assert {r.path for r in receiver.requests} == {"/hook"}


class TestDeadAndRedeliver:
    def test_down_past_the_schedule_is_dead_then_redelivered_when_back(self, http, make_client, down_url):
        client = make_client(webhook_url=down_url)
        job = wait_terminal(http, client, submit(http, client)["id"])
        delivery = wait_delivery(http, client, job["id"], "job.succeeded", "dead")
        assert delivery["attempts"] == ATTEMPTS
        assert all(a["status_code"] is None and "Cannot connect to host" in a["error"] for a in delivery["attempt_log"])
        assert webhook_state(http, client, job["id"])["state"] == "dead"

        back = Receiver(port=int(down_url.split(":")[2].split("/")[0])).start()
        try:
            response = http.post(f"/v1/jobs/{job['id']}/deliveries/{delivery['id']}/redeliver",
                                 headers=client.headers)
            assert response.status_code == 200, response.text
            assert response.json()["status"] in ("pending", "delivered")
            [hook] = back.wait_for_job(job["id"])
            assert hook.headers["webhook-id"] == delivery["id"]
            assert Webhook(client["webhook_secret"]).verify(hook.body, hook.headers)["data"]["id"] == job["id"]
            again = wait_delivery(http, client, job["id"], "job.succeeded", "delivered")
            assert [a["status_code"] for a in again["attempt_log"]] == [None] * ATTEMPTS + [200]
            assert webhook_state(http, client, job["id"])["state"] == "delivered"
        finally:
            back.stop()

    def test_redelivering_another_clients_delivery_is_404(self, http, make_client, receiver):
        owner, other = make_client("owner", webhook_url=receiver.url), make_client("other")
        job = wait_terminal(http, owner, submit(http, owner)["id"])
        delivery = wait_delivery(http, owner, job["id"], "job.succeeded", "delivered")
        response = http.post(f"/v1/jobs/{job['id']}/deliveries/{delivery['id']}/redeliver", headers=other.headers)
        assert response.status_code == 404


class TestBulkRedeliver:
    def test_cli_and_admin_api_redeliver_dead_deliveries_in_a_range(self, http, make_client, down_url):
        since = datetime.now(UTC) - timedelta(minutes=1)
        first, second = make_client("first", webhook_url=down_url), make_client("second", webhook_url=down_url)
        ops = make_client("ops", is_admin=True)
        jobs = {c["name"]: wait_terminal(http, c, submit(http, c)["id"]) for c in (first, second)}
        for client in (first, second):
            wait_delivery(http, client, jobs[client["name"]]["id"], "job.succeeded", "dead")
        until = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S%z")

        back = Receiver(port=int(down_url.split(":")[2].split("/")[0])).start()
        try:
            out = subprocess.run(
                cometjobs("webhooks", "redeliver-dead", "--from", since.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "--to", until, "--client", first["id"]),
                env=dict(os.environ), capture_output=True, text=True, timeout=60, check=True,
            )
            assert '"redelivered": 1' in out.stdout
            back.wait_for_job(jobs["first"]["id"])
            wait_delivery(http, first, jobs["first"]["id"], "job.succeeded", "delivered")
            assert deliveries(http, second, jobs["second"]["id"])[0]["status"] == "dead"

            body = {"start": since.isoformat(), "end": until}
            assert http.post("/v1/admin/webhooks/redeliver", json=body, headers=first.headers).status_code == 403
            response = http.post("/v1/admin/webhooks/redeliver", json=body, headers=ops.headers)
            assert response.status_code == 200, response.text
            [delivery] = deliveries(http, second, jobs["second"]["id"])
            assert response.json() == {"redelivered": 1, "ids": [delivery["id"]], "skipped": [], "more": False}
            back.wait_for_job(jobs["second"]["id"])
            wait_delivery(http, second, jobs["second"]["id"], "job.succeeded", "delivered")
        finally:
            back.stop()

    def test_an_empty_range_is_422(self, http, make_client):
        ops = make_client("ops", is_admin=True)
        now = datetime.now(UTC).isoformat()
        response = http.post("/v1/admin/webhooks/redeliver", json={"start": now, "end": now}, headers=ops.headers)
        assert response.status_code == 422


class TestSecretRotation:
    def test_both_secrets_verify_during_the_grace_period_then_only_the_new_one(self, http, make_client, receiver):
        client = make_client(webhook_url=receiver.url)
        old = client["webhook_secret"]
        rotated = http.post("/v1/client/webhook-secret/rotate", json={"grace_seconds": 3600}, headers=client.headers)
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["webhook_secret"]
        assert new.startswith("whsec_") and new != old
        assert http.get("/v1/client", headers=client.headers).json()["previous_secret_expires_at"]

        job = wait_terminal(http, client, submit(http, client)["id"])
        [hook] = receiver.wait_for_job(job["id"])
        assert len(hook.headers["webhook-signature"].split()) == 2
        for secret in (old, new):
            assert Webhook(secret).verify(hook.body, hook.headers)["data"]["id"] == job["id"]

        newest = http.post("/v1/client/webhook-secret/rotate", json={"grace_seconds": 0},
                           headers=client.headers).json()["webhook_secret"]
        job = wait_terminal(http, client, submit(http, client)["id"])
        [hook] = receiver.wait_for_job(job["id"])
        assert len(hook.headers["webhook-signature"].split()) == 1
        assert Webhook(newest).verify(hook.body, hook.headers)["data"]["id"] == job["id"]
        for expired in (old, new):
            with pytest.raises(WebhookVerificationError):
                Webhook(expired).verify(hook.body, hook.headers)


class TestOrdering:
    def test_terminal_event_waits_for_a_failing_running_event(self, http, make_client, receiver):
        receiver.default, receiver.headers = 503, {"retry-after": "4"}
        client = make_client(webhook_url=receiver.url)
        job = wait_terminal(http, client, submit(http, client, webhook_events=["job.running"])["id"])
        completed = parse(job["completed_at"])

        def running_failed_after_the_job_ended() -> bool:
            [running] = [d for d in deliveries(http, client, job["id"]) if d["event_type"] == "job.running"]
            assert running["status"] == "pending", "job.running used up its schedule before the job ended"
            return any(parse(a["started_at"]) > completed and a["status_code"] == 503 for a in running["attempt_log"])

        wait_for(running_failed_after_the_job_ended, timeout=60, message="job.running failing after the job ended")
        terminal = [d for d in deliveries(http, client, job["id"]) if d["event_type"] == "job.succeeded"]
        assert terminal and terminal[0]["attempts"] == 0 and terminal[0]["status"] == "pending"
        state = webhook_state(http, client, job["id"])
        assert (state["state"], state["event_type"]) == ("retrying", "job.running")

        receiver.default, receiver.headers = 200, {}
        receiver.wait_for_job(job["id"], count=1)
        hooks = wait_for(lambda: (lambda got: got if got and got[-1].json["type"] == "job.succeeded" else None)(
            receiver.for_job(job["id"])), timeout=60, message="the terminal event")
        types = [h.json["type"] for h in hooks]
        assert types[-1] == "job.succeeded" and set(types[:-1]) == {"job.running"}
        assert [h.status for h in hooks][-2:] == [200, 200]
        running, succeeded = deliveries(http, client, job["id"])
        assert (running["event_type"], running["status"]) == ("job.running", "delivered")
        assert parse(succeeded["attempt_log"][0]["started_at"]) >= parse(running["delivered_at"])


class TestProgressEvents:
    def test_progress_is_throttled_per_job_and_precedes_the_terminal_event(self, http, make_client, receiver, emulator):
        emulator.configure(job_seconds=5)
        client = make_client(webhook_url=receiver.url)
        job = wait_terminal(http, client, submit(http, client, webhook_events=["job.progress"])["id"])
        hooks = wait_for(lambda: (lambda got: got if got and got[-1].json["type"] == "job.succeeded" else None)(
            receiver.for_job(job["id"])), timeout=60, message="the terminal event")

        progress = [h.json for h in hooks if h.json["type"] == "job.progress"]
        assert [h.json["type"] for h in hooks] == ["job.progress"] * len(progress) + ["job.succeeded"]
        assert progress, "a subscriber gets job.progress"
        values = [p["data"]["progress"] for p in progress]
        assert values == sorted(set(values)) and all(0 < v < 100 for v in values)
        times = [parse(p["created_at"]) for p in progress]
        interval = timedelta(seconds=float(os.environ["COMETJOBS_WEBHOOK_PROGRESS_INTERVAL"]))
        assert all(b - a >= interval for a, b in zip(times, times[1:], strict=False))
        [task] = [t for t in emulator.tasks() if t["id"] == job["upstream"]["id"]]
        assert task["polls"] > len(progress)  # progress changed on more polls than were announced

    def test_client_subscription_applies_to_its_jobs_and_nothing_more_is_sent(
        self, http, make_client, receiver, emulator
    ):
        emulator.configure(job_seconds=2)  # long enough for progress to change on several polls
        client = make_client(webhook_url=receiver.url)
        patched = http.patch("/v1/client", json={"webhook_events": ["job.running"]}, headers=client.headers)
        assert patched.status_code == 200 and patched.json()["webhook_events"] == ["job.running"]
        job = wait_terminal(http, client, submit(http, client)["id"])
        wait_delivery(http, client, job["id"], "job.succeeded", "delivered")
        hooks = receiver.for_job(job["id"])
        assert [h.json["type"] for h in hooks] == ["job.running", "job.succeeded"]
        assert hooks[0].json["data"]["status"] == "running"
        assert [d["event_type"] for d in deliveries(http, client, job["id"])] == ["job.running", "job.succeeded"]


class TestCancel:
    def test_cancel_drops_pending_progress_and_running_but_sends_canceled(self, http, make_client, receiver, emulator):
        emulator.configure(job_seconds=20)
        receiver.default, receiver.headers = 503, {"retry-after": "60"}
        client = make_client(webhook_url=receiver.url)
        job_id = submit(http, client, webhook_events=["job.running", "job.progress"])["id"]

        def pending_progress() -> bool:
            found = deliveries(http, client, job_id)
            running = [d for d in found if d["event_type"] == "job.running" and d["state"] == "retrying"]
            return bool(running) and any(d["event_type"] == "job.progress" and d["status"] == "pending" for d in found)

        wait_for(pending_progress, timeout=60, message="job.running retrying and job.progress waiting")
        receiver.default, receiver.headers = 200, {}
        assert http.post(f"/v1/jobs/{job_id}/cancel", headers=client.headers).status_code in (200, 202)

        canceled = wait_delivery(http, client, job_id, "job.canceled", "delivered")
        hooks = receiver.for_job(job_id)
        assert [h.json["type"] for h in hooks] == ["job.running", "job.canceled"]
        assert hooks[-1].headers["webhook-id"] == canceled["id"]
        found = deliveries(http, client, job_id)
        assert {d["status"] for d in found if d["event_type"] in ("job.running", "job.progress")} <= {
            "canceled", "superseded"}
        assert [d["status"] for d in found if d["event_type"] == "job.running"] == ["canceled"]
        assert webhook_state(http, client, job_id)["state"] == "delivered"


class TestGone:
    def test_410_on_the_client_url_disables_it_until_it_is_set_again(self, http, make_client, receiver):
        receiver.script = [410]
        client = make_client(webhook_url=receiver.url)
        job = wait_terminal(http, client, submit(http, client)["id"])
        delivery = wait_delivery(http, client, job["id"], "job.succeeded", "disabled")
        assert [a["status_code"] for a in delivery["attempt_log"]] == [410]
        me = http.get("/v1/client", headers=client.headers).json()
        assert me["webhook_disabled_at"] and me["disabled_webhook_urls"] == [receiver.url]
        assert webhook_state(http, client, job["id"])["state"] == "disabled"

        later = wait_terminal(http, client, submit(http, client)["id"])
        assert [d["status"] for d in deliveries(http, client, later["id"])] == ["disabled"]
        response = http.post(f"/v1/jobs/{job['id']}/deliveries/{delivery['id']}/redeliver", headers=client.headers)
        assert response.status_code == 409 and response.json()["code"] == "webhook_url_disabled"
        assert len(receiver.requests) == 1

        me = http.patch("/v1/client", json={"webhook_url": receiver.url}, headers=client.headers).json()
        assert me["webhook_disabled_at"] is None and me["disabled_webhook_urls"] == []
        assert http.post(f"/v1/jobs/{job['id']}/deliveries/{delivery['id']}/redeliver",
                         headers=client.headers).status_code == 200
        receiver.wait_for_job(job["id"], count=2)
        third = wait_terminal(http, client, submit(http, client)["id"])
        [hook] = receiver.wait_for_job(third["id"])
        assert hook.status == 200

    def test_410_on_a_per_job_url_disables_only_that_url(self, http, make_client, receiver):
        gone = Receiver(default=410).start()
        try:
            client = make_client(webhook_url=receiver.url)
            job = wait_terminal(http, client, submit(http, client, webhook_url=gone.url)["id"])
            wait_delivery(http, client, job["id"], "job.succeeded", "disabled")
            me = http.get("/v1/client", headers=client.headers).json()
            assert me["webhook_disabled_at"] is None and me["disabled_webhook_urls"] == [gone.url]

            # A job naming the disabled URL is refused at once, not accepted to be silently muted.
            refused = http.post("/v1/jobs", headers=client.headers, json={
                "model": "sora-2", "input": {"prompt": "again"}, "webhook_url": gone.url})
            assert refused.status_code == 422
            assert refused.json()["errors"][0]["code"] == "webhook_url_disabled"
            default_id = submit(http, client)["id"]
            assert len(gone.requests) == 1
            [hook] = receiver.wait_for_job(default_id)
            assert hook.status == 200

            cleared = http.patch("/v1/client", json={"disabled_webhook_urls": []}, headers=client.headers)
            assert cleared.json()["disabled_webhook_urls"] == []
        finally:
            gone.stop()


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
