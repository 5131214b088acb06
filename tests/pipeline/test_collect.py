"""The collector, branch by branch: stored artifacts commit with `succeeded`, or
nothing is recorded at all."""

from __future__ import annotations

import hashlib

from app.providers.http import UpstreamError
from tests.support.inprocess import SoraScript


def collecting_job(inproc, video=b"\x00\x00\x00\x18ftypmp42 a tiny video", **client_fields):
    script = SoraScript(inproc.upstream, polls=[{"status": "completed"}], video=video)
    client = inproc.client(**client_fields)
    job_id = inproc.create_job(client)
    inproc.submit(job_id)
    inproc.clock.now = inproc.schedule(job_id).due_at
    inproc.poll()
    assert inproc.job(job_id).status == "collecting"
    inproc.publisher.clear()
    return job_id, client, script


def stored_names(inproc, job_id):
    from app.artifacts import repository
    from app.core.db import session_scope

    with session_scope() as session:
        return {a.name: a for a in repository.for_jobs(session, [job_id])[job_id]}


class TestStored:
    def test_the_result_is_stored_hashed_and_the_job_succeeds_with_one_webhook(self, inproc):
        video = b"\x00\x00\x00\x18ftypmp42" + b"x" * 5000
        job_id, _client, _ = collecting_job(inproc, video=video, webhook_url="http://127.0.0.1:9/hook")

        assert inproc.collect(job_id) == "succeeded"

        artifacts = stored_names(inproc, job_id)
        assert set(artifacts) == {"video"}  # thumbnail and spritesheet answered 404: optional
        assert (artifacts["video"].size_bytes, artifacts["video"].sha256) == (
            len(video), hashlib.sha256(video).hexdigest())
        assert [d.event_type for d in inproc.deliveries(job_id)] == ["job.succeeded"]

    def test_a_second_collect_of_a_finished_job_does_nothing(self, inproc):
        job_id, _client, _ = collecting_job(inproc)
        inproc.collect(job_id)
        assert inproc.collect(job_id) == "skipped"

    def test_a_flaky_download_is_retried_in_place(self, inproc, monkeypatch):
        import app.jobs.collector as collector

        monkeypatch.setattr(collector.time, "sleep", lambda _s: None)
        job_id, _client, _ = collecting_job(inproc)
        answers = [UpstreamError("busy", status=503, retryable=True), b"video bytes"]
        inproc.upstream.route("GET", r"/v1/videos/[^/]+/content",
                              lambda req, _m: _raise_or(answers.pop(0)) if not req.params else _raise_or(
                                  UpstreamError("none", status=404, retryable=False)))

        assert inproc.collect(job_id) == "succeeded"
        assert stored_names(inproc, job_id)["video"].size_bytes == len(b"video bytes")


class TestNotStored:
    def test_a_result_the_upstream_no_longer_has_fails_the_job(self, inproc):
        job_id, _client, _ = collecting_job(inproc)
        inproc.upstream.route("GET", r"/v1/videos/[^/]+/content", lambda _r, _m: _raise_or(
            UpstreamError("expired", status=410, retryable=False)))

        assert inproc.collect(job_id) == "failed"

        job = inproc.job(job_id)
        assert (job.status, job.error_code, job.error_source) == ("failed", "upstream_result_unavailable", "upstream")
        assert stored_names(inproc, job_id) == {}

    def test_a_failed_attempt_gives_the_lease_back_for_a_later_retry(self, inproc, monkeypatch):
        import app.jobs.collector as collector

        monkeypatch.setattr(collector.time, "sleep", lambda _s: None)
        job_id, _client, _ = collecting_job(inproc)
        inproc.upstream.route("GET", r"/v1/videos/[^/]+/content", lambda _r, _m: _raise_or(
            UpstreamError("busy", status=503, retryable=True)))

        assert inproc.collect(job_id) == "retry"

        job = inproc.job(job_id)
        assert (job.status, job.lease_token, job.collect_attempts) == ("collecting", None, 1)
        assert job.due_at > inproc.clock.now
        assert [e.type for e in inproc.timeline(job_id)][-1] == "collect_error"

    def test_attempts_run_out_as_storage_or_upstream_failure(self, inproc, monkeypatch):
        import app.jobs.collector as collector
        from app.core.settings import get_settings

        monkeypatch.setattr(collector.time, "sleep", lambda _s: None)
        monkeypatch.setattr(get_settings(), "collect_max_attempts", 2)
        job_id, _client, _ = collecting_job(inproc)
        inproc.upstream.route("GET", r"/v1/videos/[^/]+/content", lambda _r, _m: _raise_or(
            UpstreamError("busy", status=503, retryable=True)))

        assert inproc.collect(job_id) == "retry"
        inproc.clock.now = inproc.job(job_id).due_at
        assert inproc.collect(job_id) == "failed"
        assert "after 2 attempt(s)" in inproc.job(job_id).error_message

    def test_a_cancel_during_the_copy_discards_what_was_stored(self, inproc):
        from app.core.db import session_scope
        from app.jobs import service

        job_id, client, _ = collecting_job(inproc)

        def cancel_then_answer(req, _match):
            if req.params:
                raise UpstreamError("none", status=404, retryable=False)
            with session_scope() as session:
                service.cancel(session, client, job_id)
            return b"bytes that must not stay"

        inproc.upstream.route("GET", r"/v1/videos/[^/]+/content", cancel_then_answer)

        assert inproc.collect(job_id) == "superseded"

        assert inproc.job(job_id).status == "canceled"
        assert stored_names(inproc, job_id) == {}


def _raise_or(value):
    if isinstance(value, BaseException):
        raise value
    return value
