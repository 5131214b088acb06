"""Serving and deleting stored results through the API (local disk, in process): ranges
across read chunks, owner-only access, retention expiry, admin deletion, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from datetime import timedelta

import pytest

from app.artifacts.models import Artifact
from app.artifacts.retention import expire_due, expiry_for
from app.clients.models import Client
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.ids import new_id
from app.jobs.models import Job
from app.storage.backends import get_storage
from app.storage.copy import copy_stream
from tests.support.procs import cometjobs

MIB = 1024 * 1024
VIDEO = os.urandom(3 * MIB + 777)  # spans several 1 MiB read chunks
THUMB = os.urandom(5000)


def stored_job(client_id: str, expires_in: timedelta | None = timedelta(days=30)) -> str:
    """A succeeded job whose video and thumbnail are in storage (no worker involved)."""
    now = utcnow()
    job_id = new_id("job")
    prefix = f"{client_id}/{job_id}/{secrets.token_urlsafe(12)}"
    with session_scope() as session:
        session.add(Job(
            id=job_id, client_id=client_id, model="sora-2", family="sora", kind="video", input={"prompt": "p"},
            meta={}, webhook_events=[], storage_prefix=prefix, status="succeeded", progress=100,
            created_at=now, updated_at=now, status_changed_at=now, progress_at=now, completed_at=now,
        ))
        session.flush()
        for name, data, ext, ctype in (("video", VIDEO, "mp4", "video/mp4"), ("thumbnail", THUMB, "webp", "image/webp")):
            obj = copy_stream(get_storage(), f"{prefix}/{name}.{ext}", [data], ctype)
            session.add(Artifact(
                id=new_id("art"), job_id=job_id, name=name, storage_key=obj.key, content_type=ctype,
                size_bytes=obj.size_bytes, sha256=obj.sha256, created_at=now,
                expires_at=now + expires_in if expires_in is not None else None,
            ))
    return job_id


def keys_of(job_id: str) -> dict[str, str]:
    with session_scope() as session:
        return {a.name: a.storage_key for a in session.query(Artifact).filter_by(job_id=job_id)}


@pytest.fixture
def owner(api, make_client):
    return make_client("owner")


@pytest.fixture
def admin(api, make_client):
    return make_client("ops", is_admin=True)


class TestServingFromLocalDisk:
    def test_whole_object_streams_with_its_type(self, api, owner):
        job_id = stored_job(owner["id"])
        response = api.get(f"/v1/jobs/{job_id}/artifacts/video", headers=owner.headers)
        assert response.status_code == 200
        assert response.content == VIDEO
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["etag"] == f'"{hashlib.sha256(VIDEO).hexdigest()}"'
        assert response.headers["content-disposition"].startswith(f'inline; filename="{job_id}-video')

    @pytest.mark.parametrize(("header", "start", "end"), [
        ("bytes=1048570-2097160", 1048570, 2097160),  # across two read-chunk boundaries
        ("bytes=3145000-", 3145000, len(VIDEO) - 1),
        ("bytes=-1000000", len(VIDEO) - 1000000, len(VIDEO) - 1),
        ("bytes=0-0", 0, 0),
    ])
    def test_ranges_return_exactly_those_bytes(self, api, owner, header, start, end):
        job_id = stored_job(owner["id"])
        response = api.get(f"/v1/jobs/{job_id}/artifacts/video", headers={**owner.headers, "Range": header})
        assert response.status_code == 206
        assert response.content == VIDEO[start : end + 1]
        assert response.headers["content-range"] == f"bytes {start}-{end}/{len(VIDEO)}"

    def test_another_client_cannot_fetch_it(self, api, owner, make_client):
        job_id = stored_job(owner["id"])
        stranger = make_client("stranger")
        response = api.get(f"/v1/jobs/{job_id}/artifacts/video", headers=stranger.headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert VIDEO[:64] not in response.content

    def test_job_lists_urls_with_their_expiry(self, api, owner):
        job_id = stored_job(owner["id"], expires_in=timedelta(days=3))
        artifacts = {a["name"]: a for a in api.get(f"/v1/jobs/{job_id}", headers=owner.headers).json()["artifacts"]}
        assert artifacts["video"]["url"].endswith(f"/v1/jobs/{job_id}/artifacts/video")
        assert artifacts["video"]["deleted_at"] is None
        with session_scope() as session:
            expected = session.query(Artifact).filter_by(job_id=job_id, name="video").one().expires_at
        assert artifacts["video"]["expires_at"].replace("Z", "+00:00") == expected.isoformat()


class TestRetention:
    def test_expired_results_are_deleted_and_marked(self, api, owner):
        expired = stored_job(owner["id"], expires_in=-timedelta(minutes=1))
        kept = stored_job(owner["id"], expires_in=timedelta(days=1))
        forever = stored_job(owner["id"], expires_in=None)
        gone = keys_of(expired)

        assert expire_due()["expired"] == 2
        storage = get_storage()
        assert all(storage.size(key) is None for key in gone.values())
        assert all(storage.size(key) is not None for job in (kept, forever) for key in keys_of(job).values())

        job = api.get(f"/v1/jobs/{expired}", headers=owner.headers).json()
        assert {a["name"] for a in job["artifacts"]} == {"video", "thumbnail"}
        assert all(a["url"] is None and a["deleted_at"] for a in job["artifacts"])
        response = api.get(f"/v1/jobs/{expired}/artifacts/video", headers=owner.headers)
        assert response.status_code == 410
        assert response.json()["code"] == "artifact_deleted"
        events = api.get(f"/v1/jobs/{expired}/events", headers=owner.headers).json()["data"]
        assert [e["data"]["reason"] for e in events if e["type"] == "artifacts_deleted"] == ["retention"]
        assert expire_due()["expired"] == 0

    def test_an_object_that_cannot_be_deleted_stays_listed_and_is_retried(self, api, owner):
        job_id = stored_job(owner["id"], expires_in=-timedelta(minutes=1))
        keys = keys_of(job_id)
        stuck = get_storage().root / keys["video"]  # type: ignore[attr-defined]
        stuck.unlink()
        (stuck / "in-the-way").mkdir(parents=True)  # unlink() of a non-empty directory fails

        assert expire_due()["expired"] == 1
        with session_scope() as session:
            rows = {a.name: a.deleted_at for a in session.query(Artifact).filter_by(job_id=job_id)}
        assert rows["thumbnail"] is not None and rows["video"] is None

        (stuck / "in-the-way").rmdir()
        stuck.rmdir()
        assert expire_due()["expired"] == 1
        with session_scope() as session:
            assert session.query(Artifact).filter_by(job_id=job_id, deleted_at=None).count() == 0

    def test_client_retention_days_wins_over_the_default(self, api, owner):
        now = utcnow()
        with session_scope() as session:
            client = session.get(Client, owner["id"])
            assert expiry_for(client, now) == now + timedelta(days=30)  # COMETJOBS_ARTIFACT_RETENTION default
        assert api.patch("/v1/client", json={"retention_days": 3}, headers=owner.headers).status_code == 200
        with session_scope() as session:
            assert expiry_for(session.get(Client, owner["id"]), now) == now + timedelta(days=3)


class TestAdminDeletion:
    def test_admin_deletes_a_jobs_results(self, api, owner, admin):
        job_id = stored_job(owner["id"])
        keys = keys_of(job_id)
        response = api.delete(f"/v1/admin/jobs/{job_id}/artifacts", headers=admin.headers)
        assert response.status_code == 200
        assert response.json() == {"job_id": job_id, "deleted": ["thumbnail", "video"]}
        assert all(get_storage().size(key) is None for key in keys.values())
        job = api.get(f"/v1/jobs/{job_id}", headers=owner.headers).json()
        assert all(a["url"] is None for a in job["artifacts"])
        again = api.delete(f"/v1/admin/jobs/{job_id}/artifacts", headers=admin.headers)
        assert again.json()["deleted"] == []

    def test_non_admin_is_refused(self, api, owner):
        job_id = stored_job(owner["id"])
        response = api.delete(f"/v1/admin/jobs/{job_id}/artifacts", headers=owner.headers)
        assert response.status_code == 403
        assert all(get_storage().size(key) is not None for key in keys_of(job_id).values())

    def test_storage_failure_is_503_and_deletes_nothing_on_record(self, api, owner, admin):
        job_id = stored_job(owner["id"])
        stuck = get_storage().root / keys_of(job_id)["video"]  # type: ignore[attr-defined]
        stuck.unlink()
        (stuck / "in-the-way").mkdir(parents=True)
        response = api.delete(f"/v1/admin/jobs/{job_id}/artifacts", headers=admin.headers)
        assert response.status_code == 503
        assert response.json()["code"] == "storage_unavailable"
        assert all(a["url"] for a in api.get(f"/v1/jobs/{job_id}", headers=owner.headers).json()["artifacts"])

    def test_unknown_job_is_404(self, api, admin):
        assert api.delete("/v1/admin/jobs/job_nope/artifacts", headers=admin.headers).status_code == 404

    def test_cli_deletes_a_jobs_results(self, api, owner):
        job_id = stored_job(owner["id"])
        keys = keys_of(job_id)
        out = subprocess.run(cometjobs("artifacts", "delete", job_id), env=dict(os.environ),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"job_id": job_id, "deleted": ["thumbnail", "video"]}
        assert all(get_storage().size(key) is None for key in keys.values())
        missing = subprocess.run(cometjobs("artifacts", "delete", "job_nope"), env=dict(os.environ),
                                 capture_output=True, text=True, timeout=60)
        assert missing.returncode != 0
        assert "no job job_nope" in missing.stderr
