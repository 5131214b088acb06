"""A deployment of its own that stores results in S3 (moto's server on loopback), configured
by the AWS tools' standard variables: real API, worker, scheduler and emulator processes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import cometjobs_client as sdk
import httpx
import pytest

from tests.conftest import TMP
from tests.helpers import wait_terminal
from tests.support.s3 import MotoS3
from tests.support.stack import Stack
from tests.support.waiting import wait_for

# One deployment per module (a module-scoped fixture): its tests stay on one xdist worker
# instead of each worker starting its own.
pytestmark = pytest.mark.xdist_group("s3-stack")

MB = 1_000_000
URL_TTL = 120
RETENTION_DAYS = 7


@pytest.fixture(scope="module")
def bucket(s3_server: MotoS3) -> str:
    return s3_server.new_bucket()


@pytest.fixture(scope="module")
def stack(database: str, s3_server: MotoS3, bucket: str) -> Iterator[Stack]:
    stack = Stack("s3", TMP, dict(os.environ), overrides={
        **s3_server.standard_env(),
        "COMETJOBS_STORAGE_URL": f"s3://{bucket}/results",
        "COMETJOBS_S3_ADDRESSING_STYLE": "path",
        "COMETJOBS_S3_PART_BYTES": str(5 * 1024 * 1024),
        "COMETJOBS_ARTIFACT_URL_TTL": str(URL_TTL),
        "COMETJOBS_ARTIFACT_RETENTION": str(RETENTION_DAYS * 86400),
        "COMETJOBS_ARTIFACT_EXPIRY_TICK": "0.5",
        # moto dates every multipart upload 2010: only an age beyond that spares live copies.
        "COMETJOBS_ABANDONED_UPLOAD_AGE": str(30 * 365 * 86400),
    })
    try:
        stack.create_database()
        stack.start_emulator()
        stack.start_api()
        stack.start_worker()
        stack.start_scheduler()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def emulator(stack: Stack):  # type: ignore[no-untyped-def]
    stack.emulator.reset()
    return stack.emulator


def submit(stack: Stack, client: dict, prompt: str, **fields: object) -> str:
    response = stack.http.post("/v1/jobs", headers=client["headers"],
                               json={"model": "sora-2", "input": {"prompt": prompt}, **fields})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job_prefix(stack: Stack, job_id: str) -> str:
    [(prefix,)] = stack.sql("SELECT storage_prefix FROM jobs WHERE id = %s", job_id)
    return f"results/{prefix}/"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class TestResultsInS3:
    def test_results_are_stored_in_s3_and_served_by_signed_redirect(
        self, stack, emulator, s3_server, bucket, receiver, tmp_path
    ):
        client = stack.create_client("s3-owner", receiver.url)
        job_id = submit(stack, client, "a harbour at night [content-bytes=12000000]")
        job = wait_terminal(stack.http, client, job_id, timeout=90)
        assert job["status"] == "succeeded", job

        served = emulator.download(f"/v1/videos/{job['upstream']['id']}/content")
        video = next(a for a in job["artifacts"] if a["name"] == "video")
        assert video["size_bytes"] == len(served) == 12 * MB
        assert video["sha256"] == hashlib.sha256(served).hexdigest()

        prefix = job_prefix(stack, job_id)
        assert prefix.startswith(f"results/{client['id']}/{job_id}/")
        assert s3_server.keys(bucket, prefix) == [prefix + "thumbnail.webp", prefix + "video.mp4"]
        stored = s3_server.get(bucket, prefix + "video.mp4")
        assert stored["Body"] == served
        assert stored["ETag"].strip('"').endswith("-3")  # 12 MB in 5 MiB parts
        assert "-" not in s3_server.get(bucket, prefix + "thumbnail.webp")["ETag"]  # one PUT
        assert s3_server.uploads_in_progress(bucket, prefix) == []

        redirect = stack.http.get(video["url"], headers=client["headers"])
        assert redirect.status_code == 307
        signed = redirect.headers["location"]
        assert signed.startswith(f"{s3_server.endpoint}/{bucket}/{prefix}video.mp4?")
        assert parse_qs(urlsplit(signed).query)["X-Amz-Expires"] == [str(URL_TTL)]
        fetched = httpx.get(signed, timeout=30)
        assert fetched.status_code == 200
        assert fetched.content == served
        assert fetched.headers["content-type"] == "video/mp4"
        assert f'filename="{job_id}-video.mp4"' in fetched.headers["content-disposition"]
        # The Python client follows the redirect to the signed URL (without the API key).
        with sdk.Client(str(stack.http.base_url), client["api_key"]) as jobs:
            saved = jobs.download(job_id, "video", tmp_path)
        assert saved.read_bytes() == served

        completed = parse_time(job["completed_at"])
        assert abs(parse_time(video["expires_at"]) - completed - timedelta(days=RETENTION_DAYS)) < timedelta(minutes=1)
        [hook] = receiver.wait_for_job(job_id)
        assert [a["expires_at"] for a in hook.json["data"]["artifacts"]] == [a["expires_at"] for a in job["artifacts"]]

    def test_another_client_gets_no_redirect(self, stack, emulator):
        owner, stranger = stack.create_client("owner"), stack.create_client("stranger")
        job = wait_terminal(stack.http, owner, submit(stack, owner, "private"), timeout=90)
        response = stack.http.get(f"/v1/jobs/{job['id']}/artifacts/video", headers=stranger["headers"])
        assert response.status_code == 404
        assert "location" not in response.headers

    def test_client_retention_days_set_the_expiry(self, stack, emulator):
        client = stack.create_client("short-retention")
        assert stack.http.patch("/v1/client", json={"retention_days": 2}, headers=client["headers"]).status_code == 200
        job = wait_terminal(stack.http, client, submit(stack, client, "brief"), timeout=90)
        for artifact in job["artifacts"]:
            expiry = parse_time(artifact["expires_at"]) - parse_time(job["completed_at"])
            assert abs(expiry - timedelta(days=2)) < timedelta(minutes=1)

    def test_readiness_checks_the_bucket(self, stack):
        body = stack.http.get("/readyz").json()
        assert body["checks"]["storage"] == "ok"


class TestInterruptedCopies:
    def test_cut_download_leaves_no_object_and_is_retried(self, stack, emulator, s3_server, bucket):
        client = stack.create_client("cut")
        emulator.configure(cut_download_at=7 * 1024 * 1024, cut_downloads=1)  # after the first part
        job = wait_terminal(stack.http, client, submit(stack, client, "cut me [content-bytes=12000000]"), timeout=90)
        assert job["status"] == "succeeded", job
        served = emulator.download(f"/v1/videos/{job['upstream']['id']}/content")
        video = next(a for a in job["artifacts"] if a["name"] == "video")
        assert video["sha256"] == hashlib.sha256(served).hexdigest()
        assert emulator.stats()["downloads"] >= 4  # the cut video, then video and thumbnail, then ours
        prefix = job_prefix(stack, job["id"])
        assert s3_server.get(bucket, prefix + "video.mp4")["Body"] == served
        assert s3_server.uploads_in_progress(bucket, prefix) == []  # the cut upload was aborted

    @pytest.mark.chaos
    def test_worker_killed_midway_leaves_no_object_and_another_finishes(self, stack, emulator, s3_server, bucket):
        client = stack.create_client("killed")
        # 12 MB at 2 MB/s: the copy is mid-flight for several seconds.
        job_id = submit(stack, client, "slow [content-bytes=12000000] [download-rate=2000000]")
        wait_for(lambda: stack.sql("SELECT status FROM jobs WHERE id = %s", job_id) == [("collecting",)],
                 timeout=60, message="the job to start collecting")
        prefix = job_prefix(stack, job_id)
        wait_for(lambda: s3_server.uploads_in_progress(bucket, prefix), timeout=60, message="a part in flight")

        worker = next(s for s in stack.services if "-worker-" in s.name and s.alive)
        worker.kill()
        assert s3_server.keys(bucket, prefix) == []
        assert stack.sql("SELECT count(*) FROM artifacts WHERE job_id = %s", job_id) == [(0,)]

        stack.start_worker("replacement")
        job = wait_terminal(stack.http, client, job_id, timeout=90)
        assert job["status"] == "succeeded", job
        served = emulator.download(f"/v1/videos/{job['upstream']['id']}/content")
        assert next(a for a in job["artifacts"] if a["name"] == "video")["sha256"] == hashlib.sha256(served).hexdigest()
        assert s3_server.get(bucket, prefix + "video.mp4")["Body"] == served


class TestDeletion:
    def test_the_scheduler_deletes_expired_results_and_the_job_says_so(self, stack, emulator, s3_server, bucket):
        client = stack.create_client("expiring")
        job = wait_terminal(stack.http, client, submit(stack, client, "ephemeral"), timeout=90)
        prefix = job_prefix(stack, job["id"])
        assert len(s3_server.keys(bucket, prefix)) == 2
        stack.sql("UPDATE artifacts SET expires_at = now() - interval '1 second' WHERE job_id = %s RETURNING id",
                  job["id"])

        wait_for(lambda: stack.sql("SELECT count(*) FROM artifacts WHERE job_id = %s AND deleted_at IS NULL",
                                   job["id"]) == [(0,)], timeout=60, message="the expiry task")
        assert s3_server.keys(bucket, prefix) == []
        artifacts = stack.http.get(f"/v1/jobs/{job['id']}", headers=client["headers"]).json()["artifacts"]
        assert len(artifacts) == 2
        assert all(a["url"] is None and a["deleted_at"] for a in artifacts)
        assert stack.http.get(f"/v1/jobs/{job['id']}/artifacts/video", headers=client["headers"]).status_code == 410

    def test_admin_deletes_a_jobs_results_from_s3(self, stack, emulator, s3_server, bucket):
        owner = stack.create_client("owner")
        admin = stack.create_client("ops", None, "--admin")
        job = wait_terminal(stack.http, owner, submit(stack, owner, "to be removed"), timeout=90)
        prefix = job_prefix(stack, job["id"])
        response = stack.http.delete(f"/v1/admin/jobs/{job['id']}/artifacts", headers=admin["headers"])
        assert response.status_code == 200
        assert sorted(response.json()["deleted"]) == ["thumbnail", "video"]
        assert s3_server.keys(bucket, prefix) == []
        assert all(a["url"] is None for a in stack.http.get(f"/v1/jobs/{job['id']}", headers=owner["headers"]).json()["artifacts"])
