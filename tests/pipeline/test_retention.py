"""Row retention (app/jobs/retention.py): old finished jobs and uploads go, with their
objects first; what may still be downloaded or is still live stays."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from tests.providers.video_support import png
from tests.support.inprocess import SoraScript

DAY = 24 * 3600.0


def finished_job(inproc, client, **fields):
    SoraScript(inproc.upstream, polls=[{"status": "completed"}])
    job_id = inproc.create_job(client, webhook_url="http://127.0.0.1:9/hook", **fields)
    assert inproc.run_until_settled(job_id).status == "succeeded"
    return job_id


def rows(model, **where):
    from app.core.db import session_scope

    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).filter_by(**where))


def purge():
    from app.jobs.retention import purge_due

    return purge_due()


def test_a_finished_job_goes_after_its_results_and_its_retention_and_answers_404(inproc):
    from app.artifacts.models import Artifact
    from app.artifacts.retention import expire_due
    from app.jobs.models import Job, TimelineEvent
    from app.webhooks.models import WebhookDelivery

    client = inproc.client()
    old = finished_job(inproc, client)
    archive = inproc.client("archive")
    with inproc.api() as api:
        assert api.patch("/v1/client", json={"retention_days": 365}, headers=inproc.headers(archive)).status_code == 200
    keeps_results = finished_job(inproc, archive)
    [artifact] = inproc.job_artifacts(old)
    assert inproc.storage_has(artifact.storage_key)

    inproc.clock.advance(31 * DAY)
    expire_due()  # results go first, by their own retention (30 days)
    assert not inproc.storage_has(artifact.storage_key)
    assert purge()["jobs"] == 0  # the job row stays: 90 days

    inproc.clock.advance(60 * DAY)
    recent = finished_job(inproc, client)
    live = inproc.create_job(client)
    assert purge()["jobs"] == 1

    assert rows(Job, id=old) == 0
    assert rows(TimelineEvent, job_id=old) == rows(WebhookDelivery, job_id=old) == rows(Artifact, job_id=old) == 0
    assert {rows(Job, id=j) for j in (keeps_results, recent, live)} == {1}  # a stored result keeps its job
    with inproc.api() as api:
        assert api.get(f"/v1/jobs/{old}", headers=inproc.headers(client)).status_code == 404
        assert api.get(f"/v1/jobs/{recent}", headers=inproc.headers(client)).status_code == 200


def test_a_backlog_goes_in_batches_and_a_round_says_when_more_is_due(inproc, monkeypatch):
    from app.core.settings import get_settings
    from app.jobs.models import Job
    from app.jobs.retention import purge_due

    monkeypatch.setattr(get_settings(), "retention_batch_size", 2)
    client = inproc.client()
    ids = [inproc.create_job(client) for _ in range(5)]
    with inproc.api() as api:
        for job_id in ids:
            assert api.post(f"/v1/jobs/{job_id}/cancel", headers=inproc.headers(client)).status_code == 200
    inproc.clock.advance(91 * DAY)

    assert purge_due(max_batches=2) == {"jobs": 4, "uploads": 0, "spend_days": 0, "budget_spent": 1}
    assert purge_due(max_batches=2)["jobs"] == 1
    assert rows(Job) == 0

    monkeypatch.setattr(get_settings(), "job_retention", timedelta(0))  # 0: keep forever
    inproc.create_job(client)
    inproc.clock.advance(1000 * DAY)
    assert purge()["jobs"] == 0


def test_an_old_upload_goes_object_first_and_a_fresh_one_stays(inproc):
    from app.artifacts.models import Upload

    client = inproc.client()
    with inproc.api() as api:
        def upload() -> str:
            response = api.post("/v1/uploads", files={"file": ("f.png", png(), "image/png")},
                                headers=inproc.headers(client))
            assert response.status_code == 201, response.text
            return response.json()["id"]

        old = upload()
        inproc.clock.advance(8 * DAY)
        fresh = upload()
    old_key = inproc.upload_key(old)
    assert inproc.storage_has(old_key)

    assert purge()["uploads"] == 1
    assert not inproc.storage_has(old_key)
    assert rows(Upload, id=old) == 0 and rows(Upload, id=fresh) == 1
