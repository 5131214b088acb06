"""SIGKILL a worker while jobs sit in every stage; a new worker finishes them all,
nothing is submitted upstream twice, and each job announces its end exactly once."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

TERMINAL = ("succeeded", "failed", "canceled", "timed_out")


def submit(stack, client, prompt: str, webhook_url: str) -> str:
    response = stack.http.post(
        "/v1/jobs", headers=client["headers"],
        json={"model": "sora-2", "input": {"prompt": prompt}, "webhook_url": webhook_url},
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def statuses(stack, ids):
    rows = stack.sql("SELECT id, status FROM jobs WHERE id = ANY(%s)", list(ids))
    return dict(rows)


def test_killing_a_worker_in_every_stage_loses_and_doubles_nothing(make_stack):
    stack = make_stack("crash", overrides={
        "COMETJOBS_WORKER_CONCURRENCY": "14",
        # Long enough that a create call on a busy machine is not judged lost before the kill.
        "COMETJOBS_SUBMIT_LEASE": "15",
        "COMETJOBS_COLLECT_LEASE": "5",
        "COMETJOBS_WEBHOOK_LEASE": "5",
        "COMETJOBS_WEBHOOK_TIMEOUT": "120",
    })
    stack.create_database()
    stack.start_emulator()
    stack.start_api()
    first = stack.start_worker("first")
    scheduler = stack.start_scheduler()
    receiver = Receiver().start()
    try:
        client = stack.create_client("crash")
        groups: dict[str, list[str]] = defaultdict(list)
        prompts: dict[str, str] = {}

        def add(group: str, n: int, prompt: str, url: str) -> None:
            text = f"{group}-{n} {prompt}"
            job_id = submit(stack, client, text, url)
            groups[group].append(job_id)
            prompts[job_id] = text

        for n in range(3):
            add("delivering", n, "[job-seconds=0.5]", receiver.hold_url)
            add("collecting", n, "[job-seconds=0.5] [content-bytes=1500000] [download-rate=150000]", receiver.url)
            add("running", n, "[job-seconds=20]", receiver.url)

        def stages_reached() -> bool:
            s = statuses(stack, prompts)
            held = {r.json["data"]["id"] for r in receiver.requests if r.path.startswith("/hold")}
            return (
                all(s[j] == "collecting" for j in groups["collecting"])
                and all(s[j] == "running" for j in groups["running"])
                and set(groups["delivering"]) <= held
            )

        wait_for(stages_reached, timeout=90, message=lambda: f"stages: {stack.status_counts()}\n{stack.logs()}")
        for n in range(3):
            add("submitting", n, "[create-delay=120]", receiver.url)
        wait_for(lambda: all(statuses(stack, groups["submitting"])[j] == "submitting" for j in groups["submitting"]),
                 timeout=60, message=lambda: f"submits in flight: {stack.status_counts()}")
        wait_for(lambda: len([t for t in stack.emulator.tasks() if t["prompt"].startswith("submitting-")]) == 3,
                 timeout=60, message="the upstream to hold three create calls")

        # The held deliveries may be in either process: the worker's nudged send or the
        # scheduler's round. Both die.
        first.kill()
        scheduler.kill()
        receiver.release()
        stack.start_worker("second")
        stack.start_scheduler("scheduler-2")

        def all_terminal() -> bool:
            return all(s in TERMINAL for s in statuses(stack, prompts).values())

        wait_for(all_terminal, timeout=180, interval=0.5,
                 message=lambda: f"every job to end: {stack.status_counts()}\n{stack.logs()}")

        final = statuses(stack, prompts)
        for group in ("delivering", "collecting", "running"):
            assert {final[j] for j in groups[group]} == {"succeeded"}, (group, final)
        # A worker that died inside the create call cannot know whether the task exists: never resubmit.
        for job_id in groups["submitting"]:
            assert final[job_id] == "failed"
            [(code,)] = stack.sql("SELECT error_code FROM jobs WHERE id = %s", job_id)
            assert code == "upstream_submit_unknown"

        created = defaultdict(int)
        for task in stack.emulator.tasks():
            created[task["prompt"]] += 1
        assert {prompts[j]: created[prompts[j]] for j in prompts} == {p: 1 for p in prompts.values()}

        for job_id in groups["collecting"]:
            [(upstream_id,)] = stack.sql("SELECT upstream_id FROM jobs WHERE id = %s", job_id)
            [(sha,)] = stack.sql("SELECT sha256 FROM artifacts WHERE job_id = %s AND name = 'video'", job_id)
            served = stack.emulator.download(f"/v1/videos/{upstream_id}/content")
            assert sha == hashlib.sha256(served).hexdigest()

        def terminal_hooks(job_id: str):
            return [r for r in receiver.requests if r.json["data"]["id"] == job_id and r.json["type"] != "job.running"]

        wait_for(lambda: all(terminal_hooks(j) for j in prompts), timeout=90,
                 message="a terminal webhook for every job")
        # Held when their process died, so the delivery's lease runs out and it is sent again.
        wait_for(lambda: all(len(terminal_hooks(j)) >= 2 for j in groups["delivering"]), timeout=90,
                 message="the held deliveries to be sent again")
        for job_id in prompts:
            hooks = terminal_hooks(job_id)
            assert len({h.headers["webhook-id"] for h in hooks}) == 1, (job_id, [h.headers for h in hooks])
            assert len({h.json["id"] for h in hooks}) == 1
            assert hooks[0].json["type"] == f"job.{final[job_id]}"
    finally:
        receiver.stop()
