"""Two scheduler replicas: SIGKILL the leader mid-run and the other takes over its
ticks (sweeping, deadlines), while every job still finishes exactly once."""

from __future__ import annotations

from tests.support.waiting import wait_for

TERMINAL = ("succeeded", "failed", "canceled", "timed_out")


def test_killing_the_leading_scheduler_hands_its_ticks_to_the_other(make_stack):
    stack = make_stack("failover", overrides={"COMETJOBS_SCHEDULER_LEADER_CHECK": "0.5"})
    stack.create_database()
    stack.start_emulator()
    stack.start_api()
    stack.start_worker("worker")
    replicas = [stack.start_scheduler("one"), stack.start_scheduler("two")]
    leader = wait_for(lambda: next((r for r in replicas if "scheduler_leading" in r.log()), None),
                      timeout=30, message="a leader")
    [standby] = [r for r in replicas if r is not leader]
    client = stack.create_client("failover")
    finishing = [stack.submit(client, f"finish-{n} [job-seconds=3]") for n in range(6)]
    # Never progress: only the leader's sweep can end them (stall deadline 3 s).
    stalling = [stack.submit(client, f"stall-{n} [stall]", model="sora-2-stalls-fast") for n in range(3)]
    wait_for(lambda: stack.status_counts().get("running", 0) >= 4, timeout=60,
             message=lambda: f"jobs running: {stack.status_counts()}")

    leader.kill()

    def statuses() -> dict[str, str]:
        return dict(stack.sql("SELECT id, status FROM jobs"))  # type: ignore[arg-type]

    wait_for(lambda: all(s in TERMINAL for s in statuses().values()), timeout=120, interval=0.5,
             message=lambda: f"every job to end: {stack.status_counts()}\n{stack.logs()}")
    final = statuses()
    assert {final[j] for j in finishing} == {"succeeded"}, final
    assert {final[j] for j in stalling} == {"timed_out"}, final
    assert "scheduler_leading" in standby.log()
    prompts = [t["prompt"] for t in stack.emulator.tasks()]
    assert len(prompts) == len(set(prompts)) == len(finishing) + len(stalling)
