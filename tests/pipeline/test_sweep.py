"""The sweeper and the deadlines, with time moved by the test instead of waited for;
and the late watch that follows a job timed out while the upstream still worked."""

from __future__ import annotations

from app.core.tasks import TaskName
from app.providers.http import UpstreamError
from tests.support.inprocess import SoraScript

QUICK = "sora-2-quick-deadlines"  # tests/models.toml: queue 3 s, stall 3 s, absolute 30 s
SHORT = "sora-2-short-deadline"  # absolute 6 s, the others 60 s


def submitted(inproc, model="sora-2", polls=None):
    SoraScript(inproc.upstream, polls=polls or [{"status": "in_progress", "progress": 10}])
    job_id = inproc.create_job(inproc.client(), model=model)
    inproc.submit(job_id)
    inproc.publisher.clear()
    return job_id


class TestNudges:
    def test_a_granted_job_whose_nudge_was_lost_is_nudged_again_each_time_later(self, inproc):
        job_id = inproc.create_job(inproc.client())
        inproc.dispatch()
        inproc.publisher.clear()  # the dispatcher's nudge was "lost"

        assert inproc.sweep().get("submit_nudged") is None  # not overdue yet
        inproc.clock.advance(2.5)  # QUEUE_NUDGE_AFTER is 2 s in tests
        assert inproc.sweep()["submit_nudged"] == 1
        assert inproc.sweep().get("submit_nudged") is None  # pushed forward: not nudged twice
        inproc.clock.advance(2.5)
        assert inproc.sweep().get("submit_nudged") is None  # the second nudge waits twice as long
        inproc.clock.advance(2)
        assert inproc.sweep()["submit_nudged"] == 1
        assert inproc.publisher.of(TaskName.SUBMIT_JOB) == [job_id, job_id]

    def test_a_job_waiting_for_a_slot_is_never_nudged(self, inproc):
        inproc.create_job(inproc.client())
        inproc.clock.advance(10)
        assert inproc.sweep().get("submit_nudged") is None
        assert inproc.publisher.of(TaskName.SUBMIT_JOB) == []

    def test_a_job_left_in_submitting_by_a_dead_worker_fails_and_is_never_resubmitted(self, inproc):
        from app.core.db import session_scope
        from app.core.settings import get_settings
        from app.jobs import repository
        from app.jobs.states import JobStatus

        job_id = inproc.create_job(inproc.client())
        with session_scope() as session:  # what submit does before its create call
            repository.guarded_update(session, job_id, [JobStatus.QUEUED], {
                "status": "submitting", "lease_token": "lease_x",
                "due_at": inproc.clock.now + get_settings().submit_lease})

        inproc.clock.advance(get_settings().submit_lease.total_seconds() + 1)
        assert inproc.sweep()["submit_lease_expired"] == 1

        job = inproc.job(job_id)
        assert (job.status, job.error_code) == ("failed", "upstream_submit_unknown")
        assert inproc.publisher.of(TaskName.SUBMIT_JOB) == []
        assert inproc.upstream.calls == []

    def test_an_abandoned_collect_is_nudged_with_its_lease_cleared(self, inproc):
        from app.core.settings import get_settings

        job_id = submitted(inproc, polls=[{"status": "completed"}])
        inproc.clock.now = inproc.schedule(job_id).due_at
        inproc.poll()
        inproc.publisher.clear()  # the collect nudge was lost

        inproc.clock.advance(get_settings().queue_nudge_after.total_seconds() + 1)
        assert inproc.sweep()["collect_nudged"] == 1
        assert inproc.publisher.of(TaskName.COLLECT_JOB) == [job_id]
        assert inproc.collect(job_id) == "succeeded"

    def test_a_long_queue_holds_the_nudges_until_the_workers_catch_up(self, inproc):
        from app.core.settings import get_settings

        job_id = submitted(inproc, polls=[{"status": "completed"}])
        inproc.clock.now = inproc.schedule(job_id).due_at
        inproc.poll()
        inproc.publisher.clear()
        inproc.clock.advance(get_settings().queue_nudge_after.total_seconds() + 1)

        inproc.publisher.backlog = get_settings().sweep_batch_size  # its message may be among those
        assert inproc.sweep()["collect_job_nudges_held"] == 1
        assert inproc.publisher.of(TaskName.COLLECT_JOB) == []
        inproc.publisher.backlog = 3  # drained: overdue now means lost
        assert inproc.sweep()["collect_nudged"] == 1


class TestDeadlines:
    def test_a_job_never_submitted_times_out_on_its_queue_deadline(self, inproc):
        job_id = inproc.create_job(inproc.client(), model=QUICK)
        inproc.clock.advance(3.5)
        assert inproc.sweep()["timed_out"] == 1
        job = inproc.job(job_id)
        assert (job.status, job.error_code, job.error_source) == ("timed_out", "queue_timeout", "timeout")
        assert job.due_at is None  # no upstream task: nothing to watch

    def test_no_progress_for_the_stall_deadline_times_out_as_stalled(self, inproc):
        job_id = submitted(inproc, QUICK, polls=[{"status": "in_progress", "progress": 42}])
        inproc.clock.now = inproc.schedule(job_id).due_at
        inproc.poll()
        inproc.clock.advance(3.5)

        assert inproc.sweep()["timed_out"] == 1
        job = inproc.job(job_id)
        assert (job.status, job.error_code) == ("timed_out", "stalled")
        assert "42%" in job.error_message

    def test_the_absolute_deadline_ends_a_job_that_still_progresses(self, inproc):
        job_id = submitted(inproc, SHORT)
        for progress in range(10, 90, 10):
            inproc.upstream.route("GET", r"/v1/videos/[^/]+", {"status": "in_progress", "progress": progress})
            inproc.clock.now = inproc.schedule(job_id).due_at
            inproc.poll()
            inproc.sweep()
        inproc.clock.advance(6)
        inproc.sweep()
        job = inproc.job(job_id)
        assert (job.status, job.error_code) == ("timed_out", "deadline_exceeded")

    def test_a_timeout_sends_exactly_one_terminal_webhook(self, inproc):
        SoraScript(inproc.upstream, polls=[{"status": "in_progress"}])
        job_id = inproc.create_job(inproc.client(webhook_url="http://127.0.0.1:9/hook"), model=QUICK)
        inproc.clock.advance(3.5)
        inproc.sweep()
        inproc.sweep()
        assert [d.event_type for d in inproc.deliveries(job_id)] == ["job.timed_out"]


class TestLateWatch:
    """LATE_WATCH is 30 s and LATE_WATCH_INTERVAL 1 s in tests."""

    def timed_out_running(self, inproc):
        job_id = submitted(inproc, QUICK, polls=[{"status": "in_progress", "progress": 10}])
        inproc.clock.advance(3.5)
        inproc.sweep()
        job = inproc.job(job_id)
        assert (job.status, job.error_code) == ("timed_out", "stalled")
        assert job.due_at is not None  # watched
        inproc.publisher.clear()
        return job_id

    def check(self, inproc, job_id):
        inproc.clock.advance(1.5)
        inproc.sweep()
        [checked] = inproc.publisher.of(TaskName.LATE_CHECK)
        inproc.publisher.clear()
        return inproc.late_check(checked)

    def test_a_late_success_lands_on_the_timeline_and_the_job_stays_timed_out(self, inproc):
        job_id = self.timed_out_running(inproc)
        assert self.check(inproc, job_id) == "still_running"
        inproc.upstream.route("GET", r"/v1/videos/[^/]+", {"status": "completed", "progress": 100})
        assert self.check(inproc, job_id) == "late_success"

        job = inproc.job(job_id)
        assert (job.status, job.due_at) == ("timed_out", None)  # the watch ended
        [late] = [e for e in inproc.timeline(job_id) if e.type.startswith("late_")]
        assert late.data["upstream_status"] == "completed"
        assert {"name": "video", "upstream_path": f"/v1/videos/{job.upstream_id}/content"} in late.data["outputs"]
        assert [e.status for e in inproc.timeline(job_id) if e.status in ("timed_out", "succeeded")] == ["timed_out"]

    def test_a_late_failure_is_recorded(self, inproc):
        job_id = self.timed_out_running(inproc)
        inproc.upstream.route("GET", r"/v1/videos/[^/]+", {"status": "failed", "error": {"message": "gave up"}})
        assert self.check(inproc, job_id) == "late_failure"

    def test_an_upstream_error_keeps_watching(self, inproc):
        job_id = self.timed_out_running(inproc)
        inproc.upstream.route("GET", r"/v1/videos/[^/]+", lambda _r, _m: (_ for _ in ()).throw(
            UpstreamError("busy", status=503, retryable=True)))
        assert self.check(inproc, job_id) == "upstream_error"
        assert inproc.job(job_id).due_at is not None

    def test_the_watch_ends_when_the_upstream_never_finishes(self, inproc):
        job_id = self.timed_out_running(inproc)
        inproc.clock.advance(30)
        assert self.check(inproc, job_id) == "late_watch_ended"
        assert inproc.job(job_id).due_at is None
        inproc.clock.advance(5)
        inproc.sweep()
        assert inproc.publisher.of(TaskName.LATE_CHECK) == []


class TestLateWatchOfSynchronousFamilies:
    def test_a_family_with_nothing_to_poll_ends_its_watch_at_the_first_check(self, inproc):
        from app.core.db import session_scope
        from app.jobs import repository
        from app.jobs.states import JobStatus

        job_id = inproc.create_job(inproc.client(), model="gpt-image-1", input={"prompt": "a kite"})
        with session_scope() as session:  # as if it had timed out while its create call ran
            repository.guarded_update(session, job_id, [JobStatus.QUEUED], {
                "status": "timed_out", "upstream_id": "img_1", "due_at": inproc.clock.now})
        assert inproc.late_check(job_id) == "not_pollable"
        assert inproc.job(job_id).due_at is None
        assert inproc.upstream.calls == []


class TestQuietRounds:
    def test_a_round_with_nothing_due_is_one_query(self, inproc):
        submitted(inproc)  # running, its deadlines far off
        with inproc.statements() as sent:
            assert inproc.sweep() == {}
        assert len(sent) == 1, sent

    def test_only_the_steps_with_something_due_run(self, inproc):
        job_id = inproc.create_job(inproc.client())
        inproc.dispatch()
        inproc.publisher.clear()
        inproc.clock.advance(2.5)  # the granted job's nudge is due, nothing else is
        with inproc.statements() as sent:
            assert inproc.sweep() == {"submit_nudged": 1}
        assert inproc.publisher.of(TaskName.SUBMIT_JOB) == [job_id]
        assert len(sent) == 2, sent  # the probe, then the one step's claim
