"""Every model in the catalogue: its published `example_input` is valid and the job
succeeds end to end against the emulator, with its artifacts stored."""

from __future__ import annotations

import pytest

from app.providers.registry import catalog
from tests.helpers import get_job, submit, wait_terminal
from tests.support.waiting import wait_for

MODELS = sorted(catalog())


@pytest.mark.parametrize("model_id", MODELS)
def test_example_input_succeeds_end_to_end(http, make_client, model_id):
    client = make_client()
    models = {m["id"]: m for m in http.get("/v1/models", headers=client.headers).json()["data"]}
    example = models[model_id]["example_input"]
    job = submit(http, client, model=model_id, input=example)
    done = wait_terminal(http, client, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    assert done["artifacts"], done
    for artifact in done["artifacts"]:
        assert artifact["size_bytes"] > 0
        fetched = http.get(artifact["url"], headers=client.headers)
        assert fetched.status_code == 200
        assert len(fetched.content) == artifact["size_bytes"]


def test_unknown_status_word_keeps_polling_until_a_known_terminal_word(http, make_client, emulator):
    emulator.configure(job_seconds=3)
    client = make_client()
    job = submit(http, client, input={"prompt": "a comet over the sea [odd-status]"})
    odd = wait_for(
        lambda: (lambda j: j if j["upstream"]["status"] == "rendering_on_mars" else None)(
            get_job(http, client, job["id"])),
        timeout=60, interval=0.1, message="the undocumented status word to be seen",
    )
    assert odd["status"] == "running"
    done = wait_terminal(http, client, job["id"], timeout=90)
    assert done["status"] == "succeeded"
    [task] = [t for t in emulator.tasks() if "[odd-status]" in t["prompt"]]
    assert task["polls"] >= 2
    events = http.get(f"/v1/jobs/{job['id']}/events", headers=client.headers).json()["data"]
    assert [e["status"] for e in events if e["type"] == "status"][-1] == "succeeded"
