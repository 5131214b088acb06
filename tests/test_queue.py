"""Publishing: messages after commit only, and the lean Redis publisher writes exactly
what Celery's own publisher writes (a real Celery worker consumes both)."""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest
import redis

from app.core import queue
from app.core.settings import Settings
from app.core.tasks import TaskName
from tests.conftest import REDIS_URL


@pytest.fixture
def prefix():
    value = f"cjtest-queue-{uuid.uuid4().hex[:8]}:"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{value}*"):
        client.delete(key)


def pushed(prefix: str, queue_name: str) -> dict:
    [raw] = redis.Redis.from_url(REDIS_URL).lrange(prefix + queue_name, 0, -1)
    return json.loads(raw)


class TestRedisPublisher:
    def test_it_writes_the_envelope_kombu_writes(self, prefix):
        settings = Settings(broker_url=REDIS_URL, broker_key_prefix=prefix, env="test",
                            data_dir=os.environ["COMETJOBS_DATA_DIR"])
        lean = queue.producer(settings)
        assert isinstance(lean, queue.RedisPublisher)
        lean.publish(TaskName.SUBMIT_JOB, ["job_lean"])
        ours = pushed(prefix, "submit")

        other = f"{prefix}celery-"
        celery_app = lean.amqp.app
        celery_app.conf.broker_transport_options = {"global_keyprefix": other}
        celery_app.send_task(TaskName.SUBMIT_JOB.value, args=["job_celery"])  # Celery's own way
        theirs = pushed(other, "submit")

        assert set(ours) == set(theirs)
        assert {k: v for k, v in ours.items() if k not in ("body", "headers", "properties")} == \
            {k: v for k, v in theirs.items() if k not in ("body", "headers", "properties")}
        assert set(ours["headers"]) == set(theirs["headers"])
        assert ours["headers"]["task"] == theirs["headers"]["task"] == "cometjobs.submit_job"
        assert set(ours["properties"]) == set(theirs["properties"])
        assert ours["properties"]["delivery_info"]["routing_key"] == "submit"
        assert json.loads(base64.b64decode(ours["body"]))[0] == ["job_lean"]
        assert json.loads(base64.b64decode(theirs["body"]))[0] == ["job_celery"]

    def test_it_says_how_many_messages_wait_in_a_tasks_queue(self, prefix):
        settings = Settings(broker_url=REDIS_URL, broker_key_prefix=prefix, env="test",
                            data_dir=os.environ["COMETJOBS_DATA_DIR"])
        previous = queue.install(queue.producer(settings))
        try:
            for n in range(3):
                queue.send_now(TaskName.COLLECT_JOB, f"job_{n}")
            assert (queue.waiting(TaskName.COLLECT_JOB), queue.waiting(TaskName.SUBMIT_JOB)) == (3, 0)
            queue.install(queue.producer(Settings(broker_url="redis://127.0.0.1:1/0", env="test",
                                                  data_dir=os.environ["COMETJOBS_DATA_DIR"])))
            assert queue.waiting(TaskName.COLLECT_JOB) is None  # a broker that is down: unknown
        finally:
            queue.install(previous)

    def test_a_broker_that_is_down_is_a_failed_send_not_an_error(self):
        settings = Settings(broker_url="redis://127.0.0.1:1/0", env="test", data_dir=os.environ["COMETJOBS_DATA_DIR"])
        previous = queue.install(queue.producer(settings))
        try:
            assert queue.send_now(TaskName.SUBMIT_JOB, "job_x") is False
        finally:
            queue.install(previous)
