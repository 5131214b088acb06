"""The whole pipeline through real processes: API -> Postgres -> Celery -> emulator
-> storage -> signed webhook."""

from __future__ import annotations

import hashlib

from standardwebhooks import Webhook

from tests.helpers import get_job, submit, verify_signature, wait_terminal


class TestSuccessfulJob:
    def test_job_succeeds_with_verified_artifacts_and_signed_webhook(self, http, make_client, receiver, emulator):
        client = make_client(webhook_url=receiver.url)
        created = submit(http, client, input={"prompt": "a lighthouse at dawn", "seconds": 8, "size": "720x1280"},
                         metadata={"ticket": "T-1"})
        assert created["status"] == "queued"

        job = wait_terminal(http, client, created["id"])
        assert job["status"] == "succeeded", job
        assert job["progress"] == 100
        assert job["metadata"] == {"ticket": "T-1"}
        assert job["upstream"]["id"].startswith("video_")
        assert job["upstream"]["status"] == "completed"

        artifacts = {a["name"]: a for a in job["artifacts"]}
        assert set(artifacts) == {"video", "thumbnail"}
        served = emulator.download(f"/v1/videos/{job['upstream']['id']}/content")
        video = artifacts["video"]
        assert video["size_bytes"] == len(served) == 300_000
        assert video["sha256"] == hashlib.sha256(served).hexdigest()
        assert video["content_type"] == "video/mp4"
        stored = http.get(video["url"], headers=client.headers)
        assert stored.status_code == 200
        assert stored.content == served

        [hook] = receiver.wait_for_job(created["id"])
        assert hook.json["type"] == "job.succeeded"
        assert hook.json["id"].startswith("evt_")
        assert hook.json["data"]["status"] == "succeeded"
        assert hook.json["data"]["artifacts"][0]["sha256"] in {a["sha256"] for a in job["artifacts"]}
        assert verify_signature(client["webhook_secret"], hook.headers, hook.body)
        assert Webhook(client["webhook_secret"]).verify(hook.body, hook.headers)["type"] == "job.succeeded"

        upstream = [t for t in emulator.tasks() if t["prompt"] == "a lighthouse at dawn"]
        assert len(upstream) == 1
        assert upstream[0]["params"]["seconds"] == "8"
        assert upstream[0]["params"]["size"] == "720x1280"

    def test_timeline_records_each_state(self, http, make_client, emulator):
        client = make_client()
        job = wait_terminal(http, client, submit(http, client)["id"])
        events = http.get(f"/v1/jobs/{job['id']}/events", headers=client.headers).json()["data"]
        statuses = [e["status"] for e in events if e["type"] == "status"]
        assert statuses == ["queued", "submitting", "running", "collecting", "succeeded"]


class TestFailedJob:
    def test_upstream_failure_keeps_its_code_and_sends_webhook(self, http, make_client, receiver, emulator):
        client = make_client(webhook_url=receiver.url)
        created = submit(http, client, input={"prompt": "something forbidden [fail]"})
        job = wait_terminal(http, client, created["id"])
        assert job["status"] == "failed"
        assert job["error"]["code"] == "moderation_blocked"
        assert "safety" in job["error"]["message"]
        assert job["error"]["source"] == "upstream"
        assert job["artifacts"] == []
        [hook] = receiver.wait_for_job(created["id"])
        assert hook.json["type"] == "job.failed"
        assert hook.json["data"]["error"]["code"] == "moderation_blocked"
        assert verify_signature(client["webhook_secret"], hook.headers, hook.body)

    def test_upstream_rejection_at_submit_fails_without_retry(self, http, make_client, emulator):
        client = make_client()
        emulator.configure(api_key="a-different-key")  # our key is now refused: 401, never retried
        created = submit(http, client, input={"prompt": "ok"})
        job = wait_terminal(http, client, created["id"])
        assert job["status"] == "failed"
        assert job["error"]["source"] == "upstream"
        assert job["error"]["code"] == "upstream_http_401"
        assert emulator.stats()["creates"] == 0


class TestIsolation:
    def test_other_client_cannot_see_or_fetch_a_job(self, http, make_client, emulator):
        alice, bob = make_client("alice"), make_client("bob")
        job = wait_terminal(http, alice, submit(http, alice)["id"])
        assert http.get(f"/v1/jobs/{job['id']}", headers=bob.headers).status_code == 404
        assert http.post(f"/v1/jobs/{job['id']}/cancel", headers=bob.headers).status_code == 404
        assert http.get(f"/v1/jobs/{job['id']}/events", headers=bob.headers).status_code == 404
        artifact = http.get(f"/v1/jobs/{job['id']}/artifacts/video", headers=bob.headers)
        assert artifact.status_code == 404
        assert artifact.headers["content-type"] == "application/problem+json"
        assert http.get("/v1/jobs", headers=bob.headers).json()["data"] == []
        assert [j["id"] for j in http.get("/v1/jobs", headers=alice.headers).json()["data"]] == [job["id"]]


class TestRemix:
    def test_remix_of_succeeded_job_is_a_new_job(self, http, make_client, emulator):
        client = make_client()
        parent = wait_terminal(http, client, submit(http, client)["id"])
        assert parent["status"] == "succeeded"
        remix = submit(http, client, input={"prompt": "same, but at night", "remix_of": parent["id"]})
        assert remix["parent_job_id"] == parent["id"]
        done = wait_terminal(http, client, remix["id"])
        assert done["status"] == "succeeded"
        [task] = [t for t in emulator.tasks() if t["prompt"] == "same, but at night"]
        assert task["params"]["remixed_from"] == parent["upstream"]["id"]
        assert done["upstream"]["id"] != parent["upstream"]["id"]
        assert get_job(http, client, parent["id"])["status"] == "succeeded"
