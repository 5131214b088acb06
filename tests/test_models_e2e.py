"""Every model in the catalogue: its published `example_input` is valid and the job
succeeds end to end against the emulator, with its artifacts stored."""

from __future__ import annotations

from app.providers.registry import catalog, load_catalog
from tests.helpers import get_job, submit, wait_terminal
from tests.support.waiting import wait_for

# The shipped catalogue's models (tests/models.toml adds test-only ones, such as models
# whose deadlines are a few seconds: those would time out on a busy machine by design).
MODELS = sorted(load_catalog())


def test_every_example_input_succeeds_end_to_end(http, make_client):
    """All models at once (they run concurrently, as they would in production); the
    failure message names every model that did not succeed and why."""
    client = make_client()
    models = {m["id"]: m for m in http.get("/v1/models", headers=client.headers).json()["data"]}
    assert sorted(models) == sorted(catalog())
    jobs = {model_id: submit(http, client, model=model_id, input=models[model_id]["example_input"])["id"]
            for model_id in MODELS}
    problems = {}
    for model_id, job_id in jobs.items():
        done = wait_terminal(http, client, job_id, timeout=120)
        if done["status"] != "succeeded" or not done["artifacts"]:
            problems[model_id] = (done["status"], done["error"], done["artifacts"])
            continue
        for artifact in done["artifacts"]:
            fetched = http.get(artifact["url"], headers=client.headers)
            if fetched.status_code != 200 or len(fetched.content) != artifact["size_bytes"] or not fetched.content:
                problems[model_id] = ("artifact", artifact["name"], fetched.status_code, len(fetched.content))
    assert problems == {}


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
