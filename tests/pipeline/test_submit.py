"""Submit, branch by branch: at most one create call, and every way it can end."""

from __future__ import annotations

from app.core.tasks import TaskName
from app.providers.http import UpstreamError
from tests.support.inprocess import SoraScript


def statuses(inproc, job_id):
    return [e.status for e in inproc.timeline(job_id) if e.type == "status"]


class TestCreated:
    def test_the_job_runs_with_its_upstream_id_and_a_first_poll_due(self, inproc):
        SoraScript(inproc.upstream)
        job_id = inproc.create_job(inproc.client())

        assert inproc.submit(job_id) == "submitted"

        job = inproc.job(job_id)
        assert (job.status, job.upstream_id, job.upstream_status, job.submit_attempts) == (
            "running", "video_1", "queued", 1)
        assert job.lease_token is None
        assert job.due_at is None and job.timeout_at == job.deadline_at  # the run is watched by its schedule
        assert inproc.clock.now < inproc.schedule(job_id).due_at <= inproc.clock.advance(1)
        assert statuses(inproc, job_id) == ["queued", "submitting", "running"]

    def test_a_second_nudge_does_nothing(self, inproc):
        SoraScript(inproc.upstream)
        job_id = inproc.create_job(inproc.client())
        inproc.submit(job_id)

        assert inproc.submit(job_id) == "skipped"
        assert inproc.upstream.count("POST", r"/v1/videos") == 1

    def test_a_canceled_job_is_never_submitted(self, inproc):
        from app.core.db import session_scope
        from app.jobs import service

        SoraScript(inproc.upstream)
        client = inproc.client()
        job_id = inproc.create_job(client)
        with session_scope() as session:
            service.cancel(session, client, job_id)

        assert inproc.submit(job_id) == "skipped"
        assert inproc.upstream.calls == []


class TestRefused:
    def test_a_throttled_create_gives_its_slot_back_and_waits_out_retry_after(self, inproc):
        SoraScript(inproc.upstream)
        inproc.upstream.route("POST", r"/v1/videos", lambda _r, _m: (_ for _ in ()).throw(
            UpstreamError("slow down", status=429, retryable=True, retry_after=30)))
        job_id = inproc.create_job(inproc.client())

        assert inproc.submit(job_id) == "throttled"

        job = inproc.job(job_id)
        assert (job.status, job.slot_at, job.submit_attempts) == ("queued", None, 0)  # a throttle is no attempt
        assert (job.due_at - inproc.clock.now).total_seconds() >= 30
        assert [e.type for e in inproc.timeline(job_id)][-2:] == ["upstream_error", "status"]
        assert "throttled" in inproc.timeline(job_id)[-1].message

    def test_retries_stop_at_submit_max_attempts_with_the_upstream_code(self, inproc, monkeypatch):
        from app.core.settings import get_settings

        monkeypatch.setattr(get_settings(), "submit_max_attempts", 2)
        inproc.upstream.route("POST", r"/v1/videos", lambda _r, _m: (_ for _ in ()).throw(
            UpstreamError("busy", status=503, retryable=True)))
        job_id = inproc.create_job(inproc.client())

        assert inproc.submit(job_id) == "retry"
        assert inproc.submit(job_id) == "failed"

        job = inproc.job(job_id)
        assert (job.status, job.error_code, job.error_source) == ("failed", "upstream_http_503", "upstream")
        assert inproc.upstream.count("POST", r"/v1/videos") == 2

    def test_a_rejected_create_fails_at_once_with_the_upstreams_code(self, inproc):
        inproc.upstream.route("POST", r"/v1/videos", lambda _r, _m: (_ for _ in ()).throw(
            UpstreamError("prompt rejected", status=400, code="moderation_blocked", retryable=False)))
        job_id = inproc.create_job(inproc.client())

        assert inproc.submit(job_id) == "failed"

        job = inproc.job(job_id)
        assert (job.status, job.error_code, job.error_message) == ("failed", "moderation_blocked", "prompt rejected")
        assert inproc.publisher.of(TaskName.DELIVER_WEBHOOK) == []  # no webhook URL, no delivery


class TestOutcomeUnknown:
    def test_a_connection_lost_after_sending_is_never_resubmitted(self, inproc):
        inproc.upstream.route("POST", r"/v1/videos", lambda _r, _m: (_ for _ in ()).throw(
            UpstreamError("ReadTimeout", retryable=True, certain_not_processed=False)))
        job_id = inproc.create_job(inproc.client())

        assert inproc.submit(job_id) == "failed"

        job = inproc.job(job_id)
        assert (job.status, job.error_code) == ("failed", "upstream_submit_unknown")
        assert "not resubmitted" in job.error_message

    def test_an_unreadable_create_answer_is_not_resubmitted(self, inproc):
        inproc.upstream.route("POST", r"/v1/videos", {"object": "video"})  # no id
        job_id = inproc.create_job(inproc.client())

        assert inproc.submit(job_id) == "failed"

        job = inproc.job(job_id)
        assert (job.error_code, job.error_source) == ("upstream_submit_unknown", "upstream")
        assert "could not be read" in job.error_message

    def test_a_job_canceled_during_the_create_call_keeps_the_orphan_on_record(self, inproc):
        from app.core.db import session_scope
        from app.jobs import service

        client = inproc.client()
        job_id = inproc.create_job(client)

        def create_while_canceled(_req, _match):
            with session_scope() as session:
                service.cancel(session, client, job_id)
            return {"id": "video_orphan", "status": "queued"}

        inproc.upstream.route("POST", r"/v1/videos", create_while_canceled)

        assert inproc.submit(job_id) == "orphaned"

        job = inproc.job(job_id)
        assert job.status == "canceled"
        orphan = [e for e in inproc.timeline(job_id) if e.type == "upstream_orphan"]
        assert orphan[0].data == {"upstream_id": "video_orphan"}


class TestInputs:
    def test_an_upload_deleted_before_submit_fails_the_job_as_invalid_input(self, inproc):
        import io

        from PIL import Image

        from app.artifacts import uploads
        from app.artifacts.models import Upload
        from app.core.db import session_scope

        SoraScript(inproc.upstream)
        client = inproc.client()
        png = io.BytesIO()
        Image.new("RGB", (1280, 720)).save(png, format="PNG")
        with session_scope() as session:
            upload = uploads.create(session, client, "ref.png", "image/png", io.BytesIO(png.getvalue()))
        job_id = inproc.create_job(client, input={"prompt": "a boat", "input_reference": upload.id,
                                                  "size": "1280x720"})
        with session_scope() as session:
            session.delete(session.get(Upload, upload.id))

        assert inproc.submit(job_id) == "failed"

        job = inproc.job(job_id)
        assert (job.error_code, job.error_source) == ("input_unavailable", "validation")
        assert inproc.upstream.calls == []

    def test_a_model_removed_from_the_catalogue_fails_the_job(self, inproc):
        from sqlalchemy import update

        from app.core.db import session_scope
        from app.jobs.models import Job

        job_id = inproc.create_job(inproc.client())
        with session_scope() as session:
            session.execute(update(Job).where(Job.id == job_id).values(model="sora-1-retired"))

        assert inproc.submit(job_id) == "failed"
        assert (inproc.job(job_id).error_code, inproc.job(job_id).error_source) == ("model_unavailable", "validation")


class TestSynchronousFamilies:
    def test_an_answer_with_the_result_goes_straight_to_collecting(self, inproc):
        import base64

        inproc.upstream.route("POST", r"/v1/images/generations", {
            "created": 1, "data": [{"b64_json": base64.b64encode(b"\x89PNG fake").decode()}]})
        job_id = inproc.create_job(inproc.client(), model="gpt-image-1", input={"prompt": "a red kite"})

        assert inproc.submit(job_id) == "submitted"

        job = inproc.job(job_id)
        assert (job.status, job.progress) == ("collecting", 100)
        assert inproc.publisher.of(TaskName.COLLECT_JOB) == [job_id]
        assert inproc.collect(job_id) == "succeeded"
