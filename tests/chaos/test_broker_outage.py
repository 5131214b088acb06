"""Redis restarts with an empty dataset mid-run: every queued message is gone,
yet every job finishes, because the database says what is overdue."""

from __future__ import annotations

from tests.support.receiver import Receiver
from tests.support.stack import RedisServer
from tests.support.waiting import wait_for

TERMINAL = ("succeeded", "failed", "canceled", "timed_out")


def test_jobs_survive_a_redis_restart_with_an_empty_dataset(make_stack):
    from tests.conftest import TMP

    redis = RedisServer(TMP).start()
    stack = make_stack("redis", redis_url=redis.url)
    stack.create_database()
    stack.start_emulator()
    stack.start_api()
    stack.start_worker("worker")
    stack.start_scheduler()
    receiver = Receiver().start()
    try:
        client = stack.create_client("redis", receiver.url)

        def submit(prompt: str) -> str:
            response = stack.http.post("/v1/jobs", headers=client["headers"],
                                       json={"model": "sora-2", "input": {"prompt": prompt}})
            assert response.status_code == 202, response.text
            return response.json()["id"]

        before = [submit(f"before-{n} [job-seconds=6]") for n in range(8)]
        wait_for(lambda: stack.status_counts().get("running", 0) >= 4, timeout=60,
                 message=lambda: f"jobs running: {stack.status_counts()}")

        redis.kill()
        # Accepted while the broker is down: stored, the nudge is lost, the sweeper re-drives.
        during = [submit(f"during-{n} [job-seconds=1]") for n in range(3)]
        redis.start()  # same port, empty dataset
        after = [submit(f"after-{n} [job-seconds=1]") for n in range(3)]

        ids = before + during + after

        def finished() -> bool:
            rows = stack.sql("SELECT status FROM jobs WHERE id = ANY(%s)", ids)
            return len(rows) == len(ids) and all(status in TERMINAL for (status,) in rows)

        wait_for(finished, timeout=180, interval=0.5,
                 message=lambda: f"all jobs to finish: {stack.status_counts()}\n{stack.logs()}")
        assert stack.status_counts() == {"succeeded": len(ids)}
        prompts = [t["prompt"] for t in stack.emulator.tasks()]
        assert sorted(prompts) == sorted(set(prompts)) and len(prompts) == len(ids)
        wait_for(lambda: all(receiver.for_job(j) for j in ids), timeout=90, message="every job's webhook")
        for job_id in ids:
            assert len({r.headers["webhook-id"] for r in receiver.for_job(job_id)}) == 1
        # The outage was real: the worker lost its broker connection (with fair dispatch the
        # API publishes nothing on submit; the scheduler's dispatcher nudges).
        worker_log = next(s for s in stack.services if "-worker" in s.name).log()
        assert "Connection to broker lost" in worker_log
    finally:
        receiver.stop()
        redis.kill()
