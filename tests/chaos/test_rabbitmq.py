"""The same guarantees on RabbitMQ (`amqp://`) as the broker: the worker SIGKILLed with
jobs running and the broker's app stopped and started mid-run (every connection cut,
jobs accepted meanwhile), yet every job finishes, none is created upstream twice and
each announces its end with exactly one `webhook-id`.

Each test gets a virtual host of its own on the machine's RabbitMQ (127.0.0.1:5672,
guest/guest); without RabbitMQ the test is skipped, saying so."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

# The outage restarts the node's app: the tests that do so never run side by side.
pytestmark = pytest.mark.xdist_group("rabbitmq")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def _node_running() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def vhost() -> Iterator[str]:
    if shutil.which("rabbitmqctl") is None or not _node_running():
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672 (Debian's rabbitmq-server; .ci/run starts it)")
    name = f"cjtest-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        if not _node_running():  # never leave the machine's broker stopped
            subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)
        subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, timeout=120)


def test_a_killed_worker_and_a_broker_restart_lose_and_double_nothing(make_stack, vhost):
    stack = make_stack("amqp", overrides={"COMETJOBS_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"})
    stack.create_database()
    stack.start_emulator()
    stack.start_api()
    first = stack.start_worker("first")
    scheduler = stack.start_scheduler()
    receiver = Receiver().start()
    try:
        client = stack.create_client("amqp", receiver.url)
        before = [stack.submit(client, f"before-{n} [job-seconds=12]") for n in range(6)]
        # Killed once every create call has answered: a worker killed during one ends its job
        # `upstream_submit_unknown` by design (tests/chaos/test_worker_crash.py proves that case).
        wait_for(lambda: stack.status_counts() == {"running": 6}, timeout=90,
                 message=lambda: f"jobs running: {stack.status_counts()}\n{stack.logs()}")
        first.kill()
        _rabbitmqctl("stop_app")  # every connection cut, nothing can be published
        try:
            during = [stack.submit(client, f"during-{n} [job-seconds=1]") for n in range(3)]  # nudged later
            # The outage is real: the dispatcher granted them slots and could not send a nudge.
            wait_for(lambda: "publish_failed" in scheduler.log(), timeout=60, message="a failed publish")
        finally:
            _rabbitmqctl("start_app")
        stack.start_worker("second")
        after = [stack.submit(client, f"after-{n} [job-seconds=1]") for n in range(3)]

        stack.assert_each_succeeded_once(before + during + after, receiver)
    finally:
        receiver.stop()
