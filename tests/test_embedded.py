"""The embedded default: `cometjobs dev` with nothing configured runs the same
flow on SQLite, the SQLite-backed broker, local disk and the emulator, and
stops every child on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cometjobs_client as sdk
import httpx
import psutil
import pytest

from tests.helpers import submit, verify_signature
from tests.support.procs import free_port
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

HERE = Path(__file__).parent


@pytest.fixture
def dev_stack(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMETJOBS_")}
    env["COMETJOBS_MODELS_FILE"] = str(HERE / "models.toml")
    env["COMETJOBS_POLL_TICK"] = "0.3"
    env["COMETJOBS_WEBHOOK_TICK"] = "0.3"
    port = free_port()
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cometjobs", "dev", "--port", str(port), "--emulator-port", str(free_port()),
         "--emulator-job-seconds", "1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )

    def output() -> str:
        return (tmp_path / "dev.log").read_text(errors="replace")

    try:
        wait_for(lambda: "cometjobs is running" in output() or proc.poll() is not None, timeout=90,
                 message=lambda: f"dev to start:\n{output()[-3000:]}")
        assert proc.poll() is None, output()[-3000:]
        saved = json.loads((tmp_path / ".cometjobs" / "dev-client.json").read_text())
        yield {"proc": proc, "url": f"http://127.0.0.1:{port}", "client": saved, "output": output,
               "data": tmp_path / ".cometjobs"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_dev_runs_a_job_end_to_end_and_stops_cleanly(dev_stack):
    out = dev_stack["output"]()
    assert "database: SQLite" in out
    assert "broker: embedded" in out
    assert "storage: local disk" in out
    assert "CometAPI: the emulator" in out
    assert dev_stack["client"]["api_key"] in out
    assert f"  export KEY={dev_stack['client']['api_key']}" in out.splitlines()
    assert f"Saved in:       {dev_stack['data'] / 'dev-client.json'}" in out.splitlines()

    receiver = Receiver().start()
    try:
        with httpx.Client(base_url=dev_stack["url"], timeout=30) as http:
            client = dev_stack["client"]
            job = submit(http, client, webhook_url=receiver.url)
            # The Python client's wait: the long-poll, which on SQLite re-reads every second.
            try:
                with sdk.Client(dev_stack["url"], client["api_key"]) as jobs:
                    done = jobs.wait(job["id"], timeout=120).model_dump(mode="json")
            except sdk.WaitTimeout as exc:
                raise AssertionError(f"{exc}\n{dev_stack['output']()[-6000:]}") from None
            assert done["status"] == "succeeded", done
            video = next(a for a in done["artifacts"] if a["name"] == "video")
            stored = http.get(video["url"], headers={"Authorization": f"Bearer {client['api_key']}"})
            import hashlib

            assert hashlib.sha256(stored.content).hexdigest() == video["sha256"]
            [hook] = receiver.wait_for_job(job["id"], timeout=60)
            assert hook.json["type"] == "job.succeeded"
            assert verify_signature(client["webhook_secret"], hook.headers, hook.body)
        assert (dev_stack["data"] / "cometjobs.db").exists()
        assert (dev_stack["data"] / "broker.db").exists()
    finally:
        receiver.stop()

    proc = dev_stack["proc"]
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 4  # emulator, api, worker (+ its pool), scheduler
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=20) == 0  # the children's grace is 10 s
    assert "cometjobs dev: stopped" in dev_stack["output"]()
    # The worker stopped its own pool: no pool child was killed under it (and replaced).
    assert "exited with 'signal" not in dev_stack["output"]()
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
