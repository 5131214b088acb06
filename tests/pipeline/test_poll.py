"""The batched poller, branch by branch."""

from __future__ import annotations

from app.core.tasks import TaskName
from app.providers.http import UpstreamError
from tests.support.inprocess import SoraScript


def running_job(inproc, polls, **client_fields):
    SoraScript(inproc.upstream, polls=polls)
    client = inproc.client(**client_fields)
    job_id = inproc.create_job(client)
    assert inproc.submit(job_id) == "submitted"
    inproc.publisher.clear()
    return job_id


def poll_once(inproc, job_id):
    """Let the job's poll fall due and run one tick."""
    inproc.clock.now = max(inproc.clock.now, inproc.schedule(job_id).due_at)
    return inproc.poll()


class TestProgress:
    def test_progress_moves_the_stall_deadline_and_the_next_poll_backs_off(self, inproc):
        job_id = running_job(inproc, [{"status": "in_progress", "progress": 30}, {"status": "in_progress",
                                                                                 "progress": 30}])
        before = inproc.schedule(job_id)

        poll_once(inproc, job_id)
        first, first_polls = inproc.job(job_id), inproc.schedule(job_id)
        poll_once(inproc, job_id)
        second, second_polls = inproc.job(job_id), inproc.schedule(job_id)

        assert (first.progress, first.upstream_status, first_polls.poll_count) == (30, "in_progress", 1)
        assert first_polls.stall_at > before.stall_at  # progress changed
        assert second_polls.stall_at == first_polls.stall_at  # it did not
        assert second.progress_at == first.progress_at

    def test_progress_never_goes_backwards(self, inproc):
        job_id = running_job(inproc, [{"status": "in_progress", "progress": 60}, {"status": "in_progress",
                                                                                 "progress": 20}])
        poll_once(inproc, job_id)
        poll_once(inproc, job_id)
        assert inproc.job(job_id).progress == 60

    def test_an_unknown_status_word_keeps_polling(self, inproc):
        job_id = running_job(inproc, [{"status": "rendering-frames", "progress": 10}, {"status": "completed"}])
        poll_once(inproc, job_id)
        assert (inproc.job(job_id).status, inproc.job(job_id).upstream_status) == ("running", "rendering-frames")
        poll_once(inproc, job_id)
        assert inproc.job(job_id).status == "collecting"

    def test_progress_events_are_throttled_per_job(self, inproc):
        job_id = running_job(inproc, [{"status": "in_progress", "progress": p} for p in (10, 20, 30)],
                             webhook_url="http://127.0.0.1:9/hook", webhook_events=["job.progress"])
        poll_once(inproc, job_id)
        poll_once(inproc, job_id)  # within COMETJOBS_WEBHOOK_PROGRESS_INTERVAL (2 s in tests)
        inproc.clock.advance(3)
        poll_once(inproc, job_id)
        progress = [d for d in inproc.deliveries(job_id) if d.event_type == "job.progress"]
        assert len(progress) == 2
        assert progress[0].status == "superseded"  # never sent, replaced by the newer snapshot


class TestEnds:
    def test_completed_moves_to_collecting_and_nudges_the_collector(self, inproc):
        job_id = running_job(inproc, [{"status": "completed", "progress": 100}])
        assert poll_once(inproc, job_id)["succeeded"] == 1
        job = inproc.job(job_id)
        assert (job.status, job.progress, job.upstream_payload["status"]) == ("collecting", 100, "completed")
        assert inproc.publisher.of(TaskName.COLLECT_JOB) == [job_id]

    def test_an_upstream_failure_keeps_its_code_and_message(self, inproc):
        job_id = running_job(inproc, [{"status": "failed", "error": {"code": "moderation_blocked",
                                                                     "message": "not allowed"}}],
                             webhook_url="http://127.0.0.1:9/hook")
        poll_once(inproc, job_id)
        job = inproc.job(job_id)
        assert (job.status, job.error_code, job.error_message, job.error_source) == (
            "failed", "moderation_blocked", "not allowed", "upstream")
        assert [d.event_type for d in inproc.deliveries(job_id)] == ["job.failed"]


class TestErrors:
    def test_a_retryable_error_is_recorded_and_polled_again_later(self, inproc):
        job_id = running_job(inproc, [UpstreamError("busy", status=503, retryable=True, retry_after=20),
                                      {"status": "completed"}])
        stats = poll_once(inproc, job_id)
        job = inproc.job(job_id)
        assert stats["errors"] == 1
        schedule = inproc.schedule(job_id)
        assert (job.status, schedule.poll_errors) == ("running", 1)
        assert (schedule.due_at - inproc.clock.now).total_seconds() >= 20
        assert [e.data["status"] for e in inproc.timeline(job_id) if e.type == "upstream_error"] == [503]
        poll_once(inproc, job_id)
        assert inproc.job(job_id).status == "collecting"
        assert inproc.schedule(job_id) is None  # the schedule ends with the run, and says how it went:
        [ended] = [e.data for e in inproc.timeline(job_id) if e.type == "status" and e.data.get("polls")]
        assert ended["polls"] == 2

    def test_answers_that_can_never_succeed_fail_the_job_after_three(self, inproc):
        gone = UpstreamError("no such video", status=404, retryable=False)
        job_id = running_job(inproc, [gone])
        for _ in range(3):
            poll_once(inproc, job_id)
        job = inproc.job(job_id)
        assert (job.status, job.error_code) == ("failed", "upstream_poll_failed")
        assert inproc.upstream.count("GET", r"/v1/videos/[^/]+") == 3

    def test_an_unreadable_answer_is_a_retryable_error(self, inproc):
        job_id = running_job(inproc, [{"progress": "lots"}])
        inproc.upstream.route("GET", r"/v1/videos/[^/]+", ["not", "an", "object"])
        poll_once(inproc, job_id)
        assert (inproc.job(job_id).status, inproc.schedule(job_id).poll_errors) == ("running", 1)
        [error] = [e for e in inproc.timeline(job_id) if e.type == "upstream_error"]
        assert error.data["code"] == "bad_response"

    def test_a_job_whose_model_was_retired_fails(self, inproc):
        from sqlalchemy import update

        from app.core.db import session_scope
        from app.jobs.models import Job

        job_id = running_job(inproc, [{"status": "in_progress"}])
        with session_scope() as session:
            session.execute(update(Job).where(Job.id == job_id).values(model="sora-1-retired"))
        poll_once(inproc, job_id)
        assert (inproc.job(job_id).status, inproc.job(job_id).error_code) == ("failed", "model_unavailable")


class TestClaims:
    def test_a_claimed_job_is_not_polled_again_until_its_lease_passes(self, inproc):
        from app.core.db import session_scope
        from app.core.settings import get_settings
        from app.jobs import repository

        job_id = running_job(inproc, [{"status": "in_progress"}])
        now = inproc.clock.now = inproc.schedule(job_id).due_at
        lease = get_settings().poll_lease
        with session_scope() as session:
            assert [r.id for r in repository.claim_due_polls(session, now, now + lease, 10)] == [job_id]
            assert repository.claim_due_polls(session, now, now + lease, 10) == []
        inproc.clock.advance(lease.total_seconds())
        with session_scope() as session:
            assert [r.id for r in repository.claim_due_polls(session, inproc.clock.now, now + 2 * lease, 10)] == [job_id]
