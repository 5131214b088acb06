"""Orchestration rules on the shared stack: deadlines, cancel races, retries of
rejected submits, a hostile upstream. (Process kills live in tests/chaos/.)"""

from __future__ import annotations

from collections import Counter

from tests.helpers import get_job, submit, wait_terminal
from tests.support.waiting import wait_for

QUICK = "sora-2-quick-deadlines"  # tests/models.toml: queue 3 s, stall 3 s, absolute 30 s
SHORT = "sora-2-short-deadline"  # absolute 6 s, the others 60 s


def events(http, client, job_id):
    return http.get(f"/v1/jobs/{job_id}/events", headers=client.headers).json()["data"]


def terminal_events(http, client, job_id):
    return [e for e in events(http, client, job_id)
            if e["type"] == "status" and e["status"] in ("succeeded", "failed", "canceled", "timed_out")]


class TestDeadlines:
    def test_no_progress_for_the_stall_deadline_times_out_as_stalled(self, http, make_client, emulator):
        client = make_client()
        job = submit(http, client, model=QUICK, input={"prompt": "stuck at 42 [stall] [job-seconds=60]"})
        done = wait_terminal(http, client, job["id"], timeout=60)
        assert done["status"] == "timed_out"
        assert done["error"]["code"] == "stalled"
        assert done["error"]["source"] == "timeout"
        assert "42%" in done["error"]["message"]

    def test_absolute_deadline_times_out_a_job_that_still_progresses(self, http, make_client, emulator):
        client = make_client()
        job = submit(http, client, model=SHORT, input={"prompt": "a slow render [job-seconds=120]"})
        done = wait_terminal(http, client, job["id"], timeout=60)
        assert done["status"] == "timed_out"
        assert done["error"]["code"] == "deadline_exceeded"
        assert "deadline" in done["error"]["message"]


class TestLateWatch:
    """A job that timed out while its upstream task was still running is checked now and
    then (tests: every 1 s for 30 s); what the upstream did later lands on its timeline."""

    @staticmethod
    def time_out_then_watch(http, client, model, prompt, code):
        job = submit(http, client, model=model, input={"prompt": prompt})
        done = wait_terminal(http, client, job["id"], timeout=60)
        assert (done["status"], done["error"]["code"]) == ("timed_out", code)
        late = wait_for(lambda: [e for e in events(http, client, job["id"]) if e["type"].startswith("late_")],
                        timeout=90, message="a finding of the late watch")
        return done, late

    def test_a_late_success_lands_on_the_timeline_and_the_job_stays_timed_out(self, http, make_client, emulator):
        client = make_client()
        done, late = self.time_out_then_watch(http, client, SHORT, "a render that ends late [job-seconds=18]",
                                              "deadline_exceeded")
        assert [e["type"] for e in late] == ["late_success"]
        assert late[0]["data"]["upstream_status"] == "completed"
        assert {"name": "video", "upstream_path": f"/v1/videos/{done['upstream']['id']}/content"} in \
            late[0]["data"]["outputs"]
        again = get_job(http, client, done["id"])
        assert (again["status"], again["artifacts"], again["completed_at"]) == ("timed_out", [], done["completed_at"])
        # The finding changes no state: one terminal status on the timeline.
        assert [e["status"] for e in terminal_events(http, client, done["id"])] == ["timed_out"]

    def test_the_watch_ends_when_the_upstream_never_finishes(self, http, make_client, emulator):
        client = make_client()
        done, late = self.time_out_then_watch(http, client, QUICK, "stuck for good [stall] [job-seconds=600]",
                                              "stalled")
        assert [e["type"] for e in late] == ["late_watch_ended"]
        assert late[0]["data"]["upstream_status"] in ("queued", "in_progress"), late[0]  # it did poll
        assert get_job(http, client, done["id"])["status"] == "timed_out"


class TestCancel:
    def test_cancel_while_collecting_discards_the_copy_and_ends_canceled(self, http, make_client, receiver, emulator):
        client = make_client(webhook_url=receiver.url)
        job = submit(http, client, input={"prompt": "big [job-seconds=0.5] [content-bytes=2000000] [download-rate=250000]"})
        wait_for(lambda: get_job(http, client, job["id"])["status"] == "collecting", timeout=60,
                 message="the job to be collecting")
        canceled = http.post(f"/v1/jobs/{job['id']}/cancel", headers=client.headers)
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"
        # The copy finishes (or is retried) but can no longer change the job.
        wait_for(lambda: [e for e in events(http, client, job["id"]) if e["type"] == "status"][-1]["status"] == "canceled"
                 and emulator.stats()["downloads"] >= 1, timeout=60, message="the download to be attempted")
        hooks = receiver.wait_for_job(job["id"])
        final = get_job(http, client, job["id"])
        assert final["status"] == "canceled"
        assert final["artifacts"] == []
        assert [e["status"] for e in terminal_events(http, client, job["id"])] == ["canceled"]
        assert [h.json["type"] for h in hooks] == ["job.canceled"]

    def test_cancel_racing_completion_ends_in_exactly_one_terminal_state(self, http, make_client, receiver, emulator):
        client = make_client(webhook_url=receiver.url)
        ids = [submit(http, client, input={"prompt": f"race-{n} [job-seconds={0.3 + n * 0.15:.2f}]"})["id"] for n in range(10)]
        outcomes = {}
        for job_id in ids:
            response = http.post(f"/v1/jobs/{job_id}/cancel", headers=client.headers)
            assert response.status_code in (200, 409), response.text
            outcomes[job_id] = response.status_code
        for job_id in ids:
            done = wait_terminal(http, client, job_id, timeout=60)
            assert done["status"] in ("canceled", "succeeded")
            if outcomes[job_id] == 200:
                assert done["status"] == "canceled"
            ends = terminal_events(http, client, job_id)
            assert len(ends) == 1, ends
            hooks = receiver.wait_for_job(job_id)
            assert len({h.headers["webhook-id"] for h in hooks}) == 1
            assert hooks[0].json["type"] == f"job.{done['status']}"


class TestSubmitRetries:
    def test_throttled_submit_is_retried_and_created_once(self, http, make_client, emulator):
        emulator.configure(throttle_rate=1.0, retry_after=0.2)
        client = make_client()
        job = submit(http, client, input={"prompt": "patience"})

        def throttled_twice():
            errors = [e for e in events(http, client, job["id"]) if e["type"] == "upstream_error"]
            return errors if len(errors) >= 2 else None

        errors = wait_for(throttled_twice, timeout=60, message="two throttled create calls")
        assert errors[0]["data"]["stage"] == "submit"
        assert errors[0]["data"]["status"] == 429
        assert errors[0]["data"]["request_id"]  # kept from "(request id: ...)" for support
        emulator.configure(throttle_rate=0.0)
        done = wait_terminal(http, client, job["id"], timeout=90)
        assert done["status"] == "succeeded"
        assert emulator.stats()["creates"] == 1

    def test_non_retryable_rejection_fails_at_once_with_the_upstream_error(self, http, make_client, emulator):
        client = make_client()
        # An upstream that refuses the model name answers 400 invalid_request: never retried.
        job = submit(http, client, model=QUICK, input={"prompt": "x"})
        emulator.configure(api_key="not-ours")
        done = wait_terminal(http, client, job["id"], timeout=60)
        assert done["status"] == "failed"
        assert done["error"]["source"] == "upstream"
        submits = [e for e in events(http, client, job["id"]) if e["type"] == "upstream_error"]
        assert len(submits) <= 1


class TestHostileUpstream:
    def test_every_job_finishes_with_bounded_calls_despite_500s_429s_and_latency(self, http, make_client, emulator):
        emulator.configure(error_rate=0.3, throttle_rate=0.1, retry_after=0.5, latency=0.15, job_seconds=2)
        client = make_client()
        ids = [submit(http, client, input={"prompt": f"chaos-{n}"})["id"] for n in range(12)]
        finals = [wait_terminal(http, client, job_id, timeout=240) for job_id in ids]
        assert Counter(j["status"] for j in finals) == {"succeeded": 12}, [j["error"] for j in finals]
        stats = emulator.stats()
        assert stats["creates"] == 12  # injected errors happen before a task exists: none was doubled
        calls = stats["creates"] + stats["polls"] + stats["downloads"] + sum(stats["faults"].values())
        assert calls / 12 < 80, stats
        assert max(stats["polls_per_task"].values()) < 60, stats["polls_per_task"]
        recorded = [e for j in ids for e in events(http, client, j) if e["type"] == "upstream_error"]
        assert recorded and all(e["data"]["request_id"] for e in recorded if e["data"].get("status"))
