"""Redis restarts with an empty dataset mid-run: every queued message is gone,
yet every job finishes, because the database says what is overdue."""

from __future__ import annotations

from tests.support.receiver import Receiver
from tests.support.stack import RedisServer
from tests.support.waiting import wait_for


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
        before = [stack.submit(client, f"before-{n} [job-seconds=6]") for n in range(8)]
        wait_for(lambda: stack.status_counts().get("running", 0) >= 4, timeout=60,
                 message=lambda: f"jobs running: {stack.status_counts()}")

        redis.kill()
        # Accepted while the broker is down: stored, the nudge is lost, the sweeper re-drives.
        during = [stack.submit(client, f"during-{n} [job-seconds=1]") for n in range(3)]
        redis.start()  # same port, empty dataset
        after = [stack.submit(client, f"after-{n} [job-seconds=1]") for n in range(3)]

        stack.assert_each_succeeded_once(before + during + after, receiver)
        # The outage was real: the worker lost its broker connection (with fair dispatch the
        # API publishes nothing on submit; the scheduler's dispatcher nudges).
        worker_log = next(s for s in stack.services if "-worker" in s.name).log()
        assert "Connection to broker lost" in worker_log
    finally:
        receiver.stop()
        redis.kill()
