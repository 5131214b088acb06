"""Webhook delivery, branch by branch, in-process: the real sender against real HTTP
receivers on loopback, the real API in-process, and the test's clock. The retry
schedule is 0.3, 0.6, 1 s in tests (4 attempts in all)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.helpers import verify_signature
from tests.support.inprocess import SoraScript
from tests.support.receiver import Receiver

ATTEMPTS = 4


@pytest.fixture
def down_url() -> str:
    """A loopback URL nobody listens on (yet)."""
    gone = Receiver().start()
    gone.stop()
    return gone.url


def finished_job(inproc, client, **fields) -> str:
    SoraScript(inproc.upstream, polls=[{"status": "completed"}])
    job_id = inproc.create_job(client, **fields)
    assert inproc.run_until_settled(job_id).status == "succeeded"
    return job_id


def attempts_until_settled(inproc, delivery_id: str, step: float = 1.5, rounds: int = 8) -> None:
    inproc.deliver_nudged()
    for _ in range(rounds):
        if inproc.delivery(delivery_id).status != "pending":
            return
        inproc.deliver(step)


class TestRetriesUntilSuccess:
    def test_the_fourth_attempt_delivers_the_same_signed_event(self, inproc, receiver):
        receiver.script = [500, 500, 500]
        client = inproc.client(webhook_url=receiver.url)
        job_id = finished_job(inproc, client)
        [delivery] = inproc.deliveries(job_id)

        attempts_until_settled(inproc, delivery.id)

        hooks = receiver.for_job(job_id)
        assert [h.status for h in hooks] == [500, 500, 500, 200]
        assert {h.headers["webhook-id"] for h in hooks} == {delivery.id}
        assert len({h.json["id"] for h in hooks}) == 1
        for hook in hooks:
            assert Webhook(client.webhook_secret).verify(hook.body, hook.headers)["type"] == "job.succeeded"
            assert verify_signature(client.webhook_secret, hook.headers, hook.body)
        api = inproc.api()
        headers = inproc.headers(client)
        [shown] = api.get(f"/v1/jobs/{job_id}/deliveries", headers=headers).json()["data"]
        assert (shown["status"], shown["attempts"]) == ("delivered", ATTEMPTS)
        assert [a["status_code"] for a in shown["attempt_log"]] == [500, 500, 500, 200]
        assert [a["error"] for a in shown["attempt_log"]] == ["HTTP 500"] * 3 + [None]
        assert all(a["response_body"] == "ok" and a["latency_ms"] >= 0 for a in shown["attempt_log"])
        state = api.get(f"/v1/jobs/{job_id}", headers=headers).json()["webhook"]
        assert (state["state"], state["event_type"], state["attempts"]) == ("delivered", "job.succeeded", 4)


class TestRetrying:
    def test_retry_after_is_honoured_and_shown_on_the_job(self, inproc, receiver):
        receiver.script = [(503, {"retry-after": "30"})]
        client = inproc.client(webhook_url=receiver.url)
        job_id = finished_job(inproc, client)
        inproc.deliver_nudged()
        inproc.deliver(5)  # the schedule's next try (0.3 s) has passed, Retry-After's has not

        [delivery] = inproc.deliveries(job_id)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
        assert delivery.next_attempt_at >= inproc.clock.now + timedelta(seconds=20)
        state = inproc.api().get(f"/v1/jobs/{job_id}", headers=inproc.headers(client)).json()["webhook"]
        assert (state["state"], state["last_error"]) == ("retrying", "HTTP 503")

    def test_redelivering_a_pending_delivery_is_409(self, inproc, receiver):
        receiver.script = [(503, {"retry-after": "30"})]
        client = inproc.client(webhook_url=receiver.url)
        job_id = finished_job(inproc, client)
        inproc.deliver_nudged()
        [delivery] = inproc.deliveries(job_id)
        response = inproc.api().post(f"/v1/jobs/{job_id}/deliveries/{delivery.id}/redeliver",
                                     headers=inproc.headers(client))
        assert (response.status_code, response.json()["code"]) == (409, "delivery_pending")


class TestRedirects:
    def test_a_redirect_is_a_failed_attempt_and_is_not_followed(self, inproc, receiver):
        receiver.script = [(307, {"location": f"http://127.0.0.1:{receiver.port}/moved"})]
        client = inproc.client(webhook_url=receiver.url)
        job_id = finished_job(inproc, client)
        [delivery] = inproc.deliveries(job_id)
        attempts_until_settled(inproc, delivery.id)
        log = inproc.attempts(delivery.id)
        assert [a.status_code for a in log] == [307, 200]
        assert log[0].error.startswith("redirect 307 to http://127.0.0.1")
        assert {r.path for r in receiver.requests} == {"/hook"}


class TestDeadAndRedeliver:
    def test_down_past_the_schedule_is_dead_then_redelivered_when_back(self, inproc, down_url):
        client = inproc.client(webhook_url=down_url)
        job_id = finished_job(inproc, client)
        [delivery] = inproc.deliveries(job_id)
        attempts_until_settled(inproc, delivery.id)
        assert (inproc.delivery(delivery.id).status, inproc.delivery(delivery.id).attempts) == ("dead", ATTEMPTS)
        assert all(a.status_code is None and "Cannot connect to host" in a.error for a in inproc.attempts(delivery.id))

        back = Receiver(port=int(down_url.split(":")[2].split("/")[0])).start()
        try:
            api = inproc.api()
            response = api.post(f"/v1/jobs/{job_id}/deliveries/{delivery.id}/redeliver", headers=inproc.headers(client))
            assert response.status_code == 200, response.text
            inproc.deliver_nudged()
            [hook] = back.for_job(job_id)
            assert hook.headers["webhook-id"] == delivery.id
            assert Webhook(client.webhook_secret).verify(hook.body, hook.headers)["data"]["id"] == job_id
            assert [a.status_code for a in inproc.attempts(delivery.id)] == [None] * ATTEMPTS + [200]
            assert api.get(f"/v1/jobs/{job_id}", headers=inproc.headers(client)).json()["webhook"]["state"] == \
                "delivered"
        finally:
            back.stop()

    def test_redelivering_another_clients_delivery_is_404(self, inproc, receiver):
        owner, other = inproc.client("owner", webhook_url=receiver.url), inproc.client("other")
        job_id = finished_job(inproc, owner)
        [delivery] = inproc.deliveries(job_id)
        response = inproc.api().post(f"/v1/jobs/{job_id}/deliveries/{delivery.id}/redeliver",
                                     headers=inproc.headers(other))
        assert response.status_code == 404


class TestBulkRedeliver:
    def test_cli_and_admin_api_redeliver_dead_deliveries_in_a_range(self, inproc, down_url):
        from cometjobs.cli import main

        first, second = inproc.client("first", webhook_url=down_url), inproc.client("second", webhook_url=down_url)
        ops = inproc.client("ops", is_admin=True)
        since = inproc.clock.now - timedelta(minutes=1)
        jobs = {c.name: finished_job(inproc, c) for c in (first, second)}
        for job_id in jobs.values():
            attempts_until_settled(inproc, inproc.deliveries(job_id)[0].id)
            assert inproc.deliveries(job_id)[0].status == "dead"
        until = inproc.clock.now + timedelta(minutes=1)

        back = Receiver(port=int(down_url.split(":")[2].split("/")[0])).start()
        try:
            fmt = "%Y-%m-%dT%H:%M:%S%z"
            out = CliRunner().invoke(main, ["webhooks", "redeliver-dead", "--from", since.strftime(fmt),
                                            "--to", until.strftime(fmt), "--client", first.id])
            assert out.exit_code == 0, out.output
            assert '"redelivered": 1' in out.output
            assert inproc.deliveries(jobs["first"])[0].status == "pending"
            assert inproc.deliveries(jobs["second"])[0].status == "dead"

            api = inproc.api()
            body = {"start": since.isoformat(), "end": until.isoformat()}
            assert api.post("/v1/admin/webhooks/redeliver", json=body, headers=inproc.headers(first)).status_code \
                == 403
            response = api.post("/v1/admin/webhooks/redeliver", json=body, headers=inproc.headers(ops))
            assert response.status_code == 200, response.text
            [delivery] = inproc.deliveries(jobs["second"])
            assert response.json() == {"redelivered": 1, "ids": [delivery.id], "skipped": [], "more": False}
            inproc.deliver()
            assert {h.json["data"]["id"] for h in back.requests} == set(jobs.values())
        finally:
            back.stop()

    def test_an_empty_range_is_422(self, inproc):
        ops = inproc.client("ops", is_admin=True)
        now = inproc.clock.now.isoformat()
        response = inproc.api().post("/v1/admin/webhooks/redeliver", json={"start": now, "end": now},
                                     headers=inproc.headers(ops))
        assert response.status_code == 422


class TestSecretRotation:
    def test_both_secrets_verify_during_the_grace_period_then_only_the_new_one(self, inproc, receiver):
        client = inproc.client(webhook_url=receiver.url)
        old = client.webhook_secret
        api = inproc.api()
        rotated = api.post("/v1/client/webhook-secret/rotate", json={"grace_seconds": 3600},
                           headers=inproc.headers(client))
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["webhook_secret"]
        assert new.startswith("whsec_") and new != old

        job_id = finished_job(inproc, client)
        inproc.deliver_nudged()
        [hook] = receiver.for_job(job_id)
        assert len(hook.headers["webhook-signature"].split()) == 2
        for secret in (old, new):
            assert Webhook(secret).verify(hook.body, hook.headers)["data"]["id"] == job_id

        newest = api.post("/v1/client/webhook-secret/rotate", json={"grace_seconds": 0},
                          headers=inproc.headers(client)).json()["webhook_secret"]
        inproc.clock.advance(1)  # the grace period (0 s) is over
        job_id = finished_job(inproc, client)
        inproc.deliver_nudged()
        [hook] = receiver.for_job(job_id)
        assert len(hook.headers["webhook-signature"].split()) == 1
        assert Webhook(newest).verify(hook.body, hook.headers)["data"]["id"] == job_id
        for expired in (old, new):
            with pytest.raises(WebhookVerificationError):
                Webhook(expired).verify(hook.body, hook.headers)


class TestOrdering:
    def test_the_terminal_event_waits_for_a_failing_running_event(self, inproc, receiver):
        receiver.default, receiver.headers = 503, {"retry-after": "4"}
        client = inproc.client(webhook_url=receiver.url)
        job_id = finished_job(inproc, client, webhook_events=["job.running"])
        inproc.deliver_nudged()
        inproc.deliver(5)
        running, succeeded = inproc.deliveries(job_id)
        assert (running.event_type, running.status, running.attempts) == ("job.running", "pending", 2)
        assert (succeeded.event_type, succeeded.attempts) == ("job.succeeded", 0)  # waits its turn

        receiver.default, receiver.headers = 200, {}
        inproc.deliver(5)
        inproc.deliver(0)  # the terminal event, released by the running event's success
        assert [h.json["type"] for h in receiver.for_job(job_id)][-2:] == ["job.running", "job.succeeded"]
        running, succeeded = inproc.deliveries(job_id)
        assert (running.status, succeeded.status) == ("delivered", "delivered")
        assert inproc.attempts(succeeded.id)[0].started_at >= running.delivered_at


class TestSubscriptions:
    def test_progress_events_precede_the_terminal_one_and_are_never_sent_stale(self, inproc, receiver):
        SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": p} for p in (20, 40, 60)]
                   + [{"status": "completed"}])
        client = inproc.client(webhook_url=receiver.url)
        job_id = inproc.create_job(client, webhook_events=["job.progress"])
        inproc.submit(job_id)
        for _ in range(4):
            inproc.clock.now = inproc.schedule(job_id).due_at
            inproc.poll()
            inproc.deliver_nudged()
            inproc.clock.advance(3)  # past COMETJOBS_WEBHOOK_PROGRESS_INTERVAL (2 s)
        inproc.collect(job_id)
        inproc.deliver_nudged()
        inproc.deliver(1)
        types = [h.json["type"] for h in receiver.for_job(job_id)]
        assert types[-1] == "job.succeeded" and set(types[:-1]) == {"job.progress"} and len(types) >= 2
        values = [h.json["data"]["progress"] for h in receiver.for_job(job_id) if h.json["type"] == "job.progress"]
        assert values == sorted(set(values)) and all(0 < v < 100 for v in values)

    def test_a_client_subscription_applies_to_its_jobs_and_nothing_more_is_sent(self, inproc, receiver):
        client = inproc.client(webhook_url=receiver.url)
        patched = inproc.api().patch("/v1/client", json={"webhook_events": ["job.running"]},
                                     headers=inproc.headers(client))
        assert patched.status_code == 200 and patched.json()["webhook_events"] == ["job.running"]
        SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": 50}, {"status": "completed"}])
        job_id = inproc.create_job(client)
        inproc.run_until_settled(job_id)
        inproc.deliver_nudged()
        inproc.deliver(1)
        hooks = receiver.for_job(job_id)
        assert [h.json["type"] for h in hooks] == ["job.running", "job.succeeded"]
        assert hooks[0].json["data"]["status"] == "running"


class TestCancel:
    def test_cancel_drops_pending_progress_and_running_but_sends_canceled(self, inproc, receiver):
        receiver.default, receiver.headers = 503, {"retry-after": "60"}
        SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": p} for p in (10, 20, 30)])
        client = inproc.client(webhook_url=receiver.url)
        job_id = inproc.create_job(client, webhook_events=["job.running", "job.progress"])
        inproc.submit(job_id)
        inproc.deliver_nudged()  # job.running fails: 503, retry in 60 s
        for _ in range(2):
            inproc.clock.now = inproc.schedule(job_id).due_at
            inproc.poll()
            inproc.clock.advance(3)
        assert any(d.event_type == "job.progress" and d.status == "pending" for d in inproc.deliveries(job_id))

        receiver.default, receiver.headers = 200, {}
        response = inproc.api().post(f"/v1/jobs/{job_id}/cancel", headers=inproc.headers(client))
        assert response.status_code == 200
        inproc.deliver_nudged()
        inproc.deliver(1)

        hooks = receiver.for_job(job_id)
        assert [h.json["type"] for h in hooks] == ["job.running", "job.canceled"]
        found = inproc.deliveries(job_id)
        assert {d.status for d in found if d.event_type in ("job.running", "job.progress")} <= {
            "canceled", "superseded"}
        assert [d.status for d in found if d.event_type == "job.running"] == ["canceled"]


class TestGone:
    def test_410_on_the_client_url_disables_it_until_it_is_set_again(self, inproc, receiver):
        receiver.script = [410]
        client = inproc.client(webhook_url=receiver.url)
        api = inproc.api()
        job_id = finished_job(inproc, client)
        inproc.deliver_nudged()
        [delivery] = inproc.deliveries(job_id)
        assert delivery.status == "disabled"
        me = api.get("/v1/client", headers=inproc.headers(client)).json()
        assert me["webhook_disabled_at"] and me["disabled_webhook_urls"] == [receiver.url]

        later = finished_job(inproc, client)
        assert [d.status for d in inproc.deliveries(later)] == ["disabled"]
        response = api.post(f"/v1/jobs/{job_id}/deliveries/{delivery.id}/redeliver", headers=inproc.headers(client))
        assert response.status_code == 409 and response.json()["code"] == "webhook_url_disabled"
        assert len(receiver.requests) == 1

        me = api.patch("/v1/client", json={"webhook_url": receiver.url}, headers=inproc.headers(client)).json()
        assert me["webhook_disabled_at"] is None and me["disabled_webhook_urls"] == []
        assert api.post(f"/v1/jobs/{job_id}/deliveries/{delivery.id}/redeliver",
                        headers=inproc.headers(client)).status_code == 200
        inproc.deliver_nudged()
        assert [h.status for h in receiver.for_job(job_id)] == [410, 200]

    def test_410_on_a_per_job_url_disables_only_that_url(self, inproc, receiver):
        gone = Receiver(default=410).start()
        try:
            client = inproc.client(webhook_url=receiver.url)
            api = inproc.api()
            job_id = finished_job(inproc, client, webhook_url=gone.url)
            inproc.deliver_nudged()
            assert inproc.deliveries(job_id)[0].status == "disabled"
            me = api.get("/v1/client", headers=inproc.headers(client)).json()
            assert me["webhook_disabled_at"] is None and me["disabled_webhook_urls"] == [gone.url]

            refused = api.post("/v1/jobs", headers=inproc.headers(client), json={
                "model": "sora-2", "input": {"prompt": "again"}, "webhook_url": gone.url})
            assert refused.status_code == 422
            assert refused.json()["errors"][0]["code"] == "webhook_url_disabled"
            default_id = finished_job(inproc, client)
            inproc.deliver_nudged()
            assert len(gone.requests) == 1
            assert [h.status for h in receiver.for_job(default_id)] == [200]
        finally:
            gone.stop()
