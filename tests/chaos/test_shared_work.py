"""Several scheduler replicas share the batched poller without polling a job twice in one round."""

from __future__ import annotations

import json

from tests.support.waiting import wait_for


def test_two_schedulers_share_polling_and_never_poll_a_job_twice_in_a_round(make_stack):
    stack = make_stack("polling", overrides={
        "COMETJOBS_POLL_TICK": "0.2",
        "COMETJOBS_POLL_BATCH_SIZE": "15",
        "COMETJOBS_WORKER_CONCURRENCY": "3",
        # Each scheduler round's counts are logged at DEBUG.
        "COMETJOBS_LOG_LEVEL": "DEBUG",
    })
    stack.create_database()
    stack.start_emulator()
    stack.start_api()
    stack.start_worker("worker")
    one = stack.start_scheduler("one")
    two = stack.start_scheduler("two")
    client = stack.create_client("polling")
    jobs = 60
    for n in range(jobs):
        response = stack.http.post("/v1/jobs", headers=client["headers"],
                                   json={"model": "sora-2", "input": {"prompt": f"poll-{n} [job-seconds=5]"}})
        assert response.status_code == 202
    wait_for(lambda: stack.status_counts() == {"succeeded": jobs}, timeout=180, interval=0.5,
             message=lambda: f"all jobs to succeed: {stack.status_counts()}\n{stack.logs()}")

    # tests/models.toml schedules polls at least 0.3 s x 0.85 (jitter) apart, and a poll's
    # next due time is set only after its answer arrived. Two polls of one task closer than
    # that can only come from two workers claiming the same job in one round.
    min_gap = 0.3 * 0.85
    gaps = []
    for task in stack.emulator.tasks():
        times = task["poll_times"]
        assert len(times) >= 2, task
        gaps += [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= min_gap, sorted(gaps)[:5]

    def polled(scheduler) -> int:
        rounds = [json.loads(line) for line in scheduler.log().splitlines() if '"event": "tick"' in line]
        return sum(r.get("polled", 0) for r in rounds if r.get("tick") == "poll")

    assert polled(one) > 0 and polled(two) > 0, (polled(one), polled(two))
