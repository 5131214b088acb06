"""API behaviour that needs no worker: auth, errors, idempotency, listing, cancel,
artifact serving, models, health."""

from __future__ import annotations

import hashlib

import pytest

from app.artifacts.models import Artifact
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.ids import new_id
from app.storage.backends import get_storage
from app.storage.copy import copy_stream

JOB = {"model": "sora-2", "input": {"prompt": "a paper boat"}}


@pytest.fixture
def caller(api, make_client):
    return make_client()


class TestAuth:
    @pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer cj_live_not-a-key"])
    def test_missing_or_bad_key_is_401_problem(self, api, header):
        headers = {"Authorization": header} if header else {}
        response = api.get("/v1/jobs", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"

    def test_requests_that_miss_the_key_cache_together_share_one_look_up(self, api, caller):
        """A burst with a key this process has not seen (or whose cache entry just
        expired): one look-up for all of them, not one each."""
        import asyncio

        import httpx

        from app.main import create_app
        from tests.support.inprocess import Pipeline

        async def burst(app, headers):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                return await asyncio.gather(*[client.get("/v1/jobs", headers=headers) for _ in range(20)])

        app = create_app()
        with Pipeline.statements() as sent:
            answers = asyncio.run(burst(app, caller.headers))
            bad = asyncio.run(burst(app, {"Authorization": "Bearer cj_live_not-a-key-at-all"}))
        assert [r.status_code for r in answers] == [200] * 20 and [r.status_code for r in bad] == [401] * 20
        look_ups = [statement for statement in sent if "api_key_hash" in statement]
        assert len(look_ups) == 2, look_ups  # one for the good key, one for the bad one

    def test_unknown_route_is_problem(self, api):
        response = api.get("/v1/nothing-here")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


class TestCreate:
    def test_accepted_with_location(self, api, caller):
        response = api.post("/v1/jobs", json=JOB, headers=caller.headers)
        assert response.status_code == 202
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["id"].startswith("job_")
        assert job["status"] == "queued"
        assert job["upstream"] == {"id": None, "status": None}
        assert api.get(response.headers["location"], headers=caller.headers).json()["id"] == job["id"]

    def test_malformed_json_is_400_problem_saying_where(self, api, caller):
        response = api.post("/v1/jobs", content=b"{not json", headers={**caller.headers, "content-type": "application/json"})
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "malformed_json"
        assert response.json()["detail"].startswith("line 1, column 2: ")

    def test_client_webhook_url_is_the_default(self, api, make_client):
        caller = make_client(webhook_url="http://127.0.0.1:9/hook")
        job_id = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()["id"]
        with session_scope() as session:
            from app.jobs.models import Job

            assert session.get(Job, job_id).webhook_url == "http://127.0.0.1:9/hook"


class TestIdempotency:
    def test_same_key_same_body_returns_the_same_job(self, api, caller):
        headers = {**caller.headers, "Idempotency-Key": "order-42"}
        first = api.post("/v1/jobs", json=JOB, headers=headers)
        second = api.post("/v1/jobs", json=JOB, headers=headers)
        assert first.status_code == second.status_code == 202
        assert first.json()["id"] == second.json()["id"]
        assert second.headers["idempotent-replayed"] == "true"
        assert len(api.get("/v1/jobs", headers=caller.headers).json()["data"]) == 1

    def test_same_key_other_body_is_422(self, api, caller):
        headers = {**caller.headers, "Idempotency-Key": "order-43"}
        api.post("/v1/jobs", json=JOB, headers=headers)
        response = api.post("/v1/jobs", json={**JOB, "input": {"prompt": "different"}}, headers=headers)
        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"

    def test_only_a_keyed_job_keeps_its_body_fingerprint(self, api, caller):
        """A job without a key can never be replayed: its body is not hashed."""
        from app.jobs.models import Job

        keyed = api.post("/v1/jobs", json=JOB, headers={**caller.headers, "Idempotency-Key": "order-44"}).json()
        plain = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        with session_scope() as session:
            assert len(session.get(Job, keyed["id"]).request_fingerprint) == 64
            assert session.get(Job, plain["id"]).request_fingerprint is None

    def test_keys_are_per_client(self, api, caller, make_client):
        other = make_client("other")
        a = api.post("/v1/jobs", json=JOB, headers={**caller.headers, "Idempotency-Key": "k"}).json()
        b = api.post("/v1/jobs", json=JOB, headers={**other.headers, "Idempotency-Key": "k"}).json()
        assert a["id"] != b["id"]


class TestList:
    def test_newest_first_with_cursor_pages(self, api, caller):
        ids = [api.post("/v1/jobs", json=JOB, headers=caller.headers).json()["id"] for _ in range(5)]
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = api.get("/v1/jobs", params=params, headers=caller.headers).json()
            seen += [j["id"] for j in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))

    def test_filters(self, api, caller):
        api.post("/v1/jobs", json=JOB, headers=caller.headers)
        pro = api.post("/v1/jobs", json={**JOB, "model": "sora-2-pro"}, headers=caller.headers).json()
        api.post(f"/v1/jobs/{pro['id']}/cancel", headers=caller.headers)
        by_model = api.get("/v1/jobs", params={"model": "sora-2-pro"}, headers=caller.headers).json()["data"]
        assert [j["id"] for j in by_model] == [pro["id"]]
        canceled = api.get("/v1/jobs", params={"status": "canceled"}, headers=caller.headers).json()["data"]
        assert [j["id"] for j in canceled] == [pro["id"]]

    def test_bad_parameters_are_422(self, api, caller):
        assert api.get("/v1/jobs", params={"status": "sleeping"}, headers=caller.headers).status_code == 422
        assert api.get("/v1/jobs", params={"limit": 0}, headers=caller.headers).status_code == 422
        assert api.get("/v1/jobs", params={"cursor": "zzz"}, headers=caller.headers).status_code == 422


class TestCancel:
    def test_cancel_queued_job(self, api, caller):
        job = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        response = api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "canceled"
        assert body["error"]["code"] == "canceled"
        assert body["completed_at"] is not None

    def test_cancel_of_finished_job_is_409(self, api, caller):
        job = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
        again = api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        assert again.json()["code"] == "job_terminal"

    def test_cancel_unknown_job_is_404(self, api, caller):
        assert api.post("/v1/jobs/job_missing/cancel", headers=caller.headers).status_code == 404


def store_artifact(job_id: str, data: bytes, name: str = "video") -> None:
    with session_scope() as session:
        from app.jobs.models import Job

        job = session.get(Job, job_id)
        obj = copy_stream(get_storage(), f"{job.storage_prefix}/{name}.mp4", [data], "video/mp4")
        session.add(Artifact(id=new_id("art"), job_id=job_id, name=name, storage_key=obj.key,
                             content_type="video/mp4", size_bytes=obj.size_bytes, sha256=obj.sha256,
                             created_at=utcnow()))


class TestArtifactServing:
    DATA = bytes(range(256)) * 40  # 10,240 bytes

    @pytest.fixture
    def job_id(self, api, caller):
        job_id = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()["id"]
        store_artifact(job_id, self.DATA)
        return job_id

    def test_whole_object(self, api, caller, job_id):
        response = api.get(f"/v1/jobs/{job_id}/artifacts/video", headers=caller.headers)
        assert response.status_code == 200
        assert response.content == self.DATA
        assert response.headers["accept-ranges"] == "bytes"
        assert response.headers["etag"] == f'"{hashlib.sha256(self.DATA).hexdigest()}"'

    @pytest.mark.parametrize(("header", "start", "end"), [
        ("bytes=0-99", 0, 99), ("bytes=100-", 100, 10239), ("bytes=-50", 10190, 10239),
        ("bytes=10000-99999", 10000, 10239), ("bytes=5-5", 5, 5),
    ])
    def test_range_requests_return_the_right_bytes(self, api, caller, job_id, header, start, end):
        response = api.get(f"/v1/jobs/{job_id}/artifacts/video", headers={**caller.headers, "Range": header})
        assert response.status_code == 206
        assert response.content == self.DATA[start : end + 1]
        assert response.headers["content-range"] == f"bytes {start}-{end}/{len(self.DATA)}"
        assert int(response.headers["content-length"]) == end - start + 1

    def test_unsatisfiable_range_is_416(self, api, caller, job_id):
        response = api.get(f"/v1/jobs/{job_id}/artifacts/video", headers={**caller.headers, "Range": "bytes=20000-"})
        assert response.status_code == 416
        assert response.headers["content-range"] == "bytes */10240"

    def test_another_client_cannot_fetch_it(self, api, job_id, make_client):
        other = make_client("other")
        assert api.get(f"/v1/jobs/{job_id}/artifacts/video", headers=other.headers).status_code == 404

    def test_unknown_artifact_is_404(self, api, caller, job_id):
        assert api.get(f"/v1/jobs/{job_id}/artifacts/nope", headers=caller.headers).status_code == 404


class TestModels:
    def test_every_model_listed_with_a_valid_example(self, api, caller):
        models = api.get("/v1/models", headers=caller.headers).json()["data"]
        ids = {m["id"] for m in models}
        assert {"sora-2", "sora-2-pro", "sora-2-all", "sora-2-pro-all"} <= ids
        for model in models:
            assert model["kind"] in {"video", "image", "audio"}
            assert model["input_schema"]["type"] == "object"
            response = api.post("/v1/jobs", json={"model": model["id"], "input": model["example_input"]},
                                headers=caller.headers)
            assert response.status_code == 202, (model["id"], response.text)


class TestHealth:
    def test_healthz(self, api):
        assert api.get("/healthz").json() == {"status": "ok", "checks": {}}

    def test_readyz_checks_each_dependency(self, api):
        body = api.get("/readyz").json()
        assert body["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
