"""`make bench-wait`: 1,000 concurrent long-polls on one API process, next to a lean reference.

Starts a scratch Postgres database and one `cometjobs api`, creates WAITERS queued jobs
(through `POST /v1/jobs/batch`), and opens one `GET /v1/jobs/{id}?wait=60` per job, all at
once. Once they are parked it measures the API process's CPU while they idle, then a
separate process ends the jobs one transaction at a time through `transitions.fail`
(the real `move()`, whose NOTIFY goes out at commit) and writes down when each commit
returned; each answer's delay is its arrival minus its job's commit (one machine, one
clock). Then the same run against `bench/wait_reference.py` (Starlette, one LISTEN, a
dict of events, an async pool: no auth, no job view) with fresh jobs, and the ratios.

The load generator and the completer share the 2-core machine with the server: compare
ratios, not absolute numbers across machines. Usage: python -m bench.wait [--waiters N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

from bench.api import _client, _env, _server
from bench.common import free_port, percentile, scratch_database

BODY = {"model": "sora-2", "input": {"prompt": "a paper boat", "seconds": "4"}}
PARK_SETTLE = 3.0
IDLE_WINDOW = 5.0


def _cpu(proc: psutil.Process) -> float:
    procs = [proc, *proc.children(recursive=True)]
    total = 0.0
    for p in procs:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def _create_jobs(url: str, key: str, count: int) -> list[str]:
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while len(ids) < count:
            n = min(100, count - len(ids))
            items = [{**BODY, "idempotency_key": uuid.uuid4().hex} for _ in range(n)]
            answer = client.post("/v1/jobs/batch", json={"jobs": items})
            answer.raise_for_status()
            ids += [r["job"]["id"] for r in answer.json()["data"] if r["job"]]
    return ids


async def _wait_all(url: str, key: str, ids: list[str], answers: dict[str, tuple[float, str]]) -> None:
    # aiohttp: httpx's pool is walked on every request and answer, which at 1,000 open
    # connections makes the load generator, not the server, the slow end.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
        async def one(job_id: str) -> None:
            async with client.get(f"/v1/jobs/{job_id}", params={"wait": "60"}) as response:
                body = await response.read()
            answers[job_id] = (time.time(), json.loads(body).get("status", str(response.status)))

        await asyncio.gather(*(one(job_id) for job_id in ids))


def _run(url: str, pid: int, key: str, ids: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = psutil.Process(pid)
    answers: dict[str, tuple[float, str]] = {}
    loop = asyncio.new_event_loop()
    cpu0, t0 = _cpu(proc), time.monotonic()
    waiting = loop.create_task(_wait_all(url, key, ids, answers))
    loop.run_until_complete(asyncio.sleep(PARK_SETTLE))
    cpu1, t1 = _cpu(proc), time.monotonic()
    loop.run_until_complete(asyncio.sleep(IDLE_WINDOW))
    cpu2, t2 = _cpu(proc), time.monotonic()
    early = len(answers)
    with tempfile.TemporaryDirectory() as tmp:
        id_file, out_file = Path(tmp, "ids.json"), Path(tmp, "commits.json")
        id_file.write_text(json.dumps(ids))
        completer = subprocess.Popen([sys.executable, "-m", "bench.wait", "--complete", str(id_file), str(out_file)],
                                     env=env, stdout=subprocess.DEVNULL)
        loop.run_until_complete(waiting)
        cpu3, t3 = _cpu(proc), time.monotonic()
        completer.wait(timeout=120)
        commits: dict[str, float] = json.loads(out_file.read_text())
    loop.close()
    delays = [(answers[j][0] - commits[j]) * 1000 for j in ids if j in commits and answers[j][1] == "canceled"]
    return {
        "parked_cpu_s": cpu1 - cpu0, "park_s": t1 - t0,
        "idle_cpu_pct": 100 * (cpu2 - cpu1) / (t2 - t1),
        "complete_cpu_s": cpu3 - cpu2, "complete_s": t3 - t2,
        "answered": len(delays), "early": early,
        "p50": percentile(delays, 0.50), "p99": percentile(delays, 0.99), "max": max(delays, default=float("nan")),
    }


def _complete(id_file: str, out_file: str) -> None:
    """The completer process: end each job in its own transaction, as a worker would."""
    from app.core.clock import utcnow
    from app.core.db import session_scope
    from app.jobs.states import ACTIVE, ErrorSource, JobStatus
    from app.jobs.transitions import fail

    commits = {}
    for job_id in json.loads(Path(id_file).read_text()):
        with session_scope() as session:
            fail(session, job_id, expected=ACTIVE, to=JobStatus.CANCELED, now=utcnow(), code="canceled",
                 message="bench", source=ErrorSource.CANCELED)
        commits[job_id] = time.time()
    Path(out_file).write_text(json.dumps(commits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--complete", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.complete:
        _complete(*args.complete)
        return
    results: dict[str, dict[str, Any]] = {}
    with scratch_database("cj_bench_wait") as database_url:
        env = _env(database_url, f"bench-wait-{uuid.uuid4().hex[:6]}:")
        env["COMETJOBS_LOG_LEVEL"] = "WARNING"
        env.setdefault("COMETJOBS_CONSOLE_SECRET", secrets.token_urlsafe(32))  # prod refuses to start without one
        key = _client(env)
        port = free_port()
        with _server([sys.executable, "-m", "cometjobs", "api", "--port", str(port)], env, port) as ours:
            pid = _pid_on(port)
            ids = _create_jobs(ours, key, args.waiters)
            results["cometjobs"] = _run(ours, pid, key, ids, env)
            ref_ids = _create_jobs(ours, key, args.waiters)
        ref_port = free_port()
        reference = [sys.executable, "-m", "uvicorn", "bench.wait_reference:app", "--port", str(ref_port),
                     "--no-access-log", "--log-level", "warning", "--http", "httptools"]
        ref_env = {**env, "COMETJOBS_DATABASE_URL": database_url}
        with _server(reference, ref_env, ref_port) as ref:
            results["reference"] = _run(ref, _pid_on(ref_port), key, ref_ids, env)

    print(f"\nbench-wait: {args.waiters} concurrent GET /v1/jobs/{{id}}?wait=60 on one API process; the jobs "
          "end one transaction at a time in another process\n")
    header = (f"{'':<11} {'park CPU s':>10} {'idle CPU %':>10} {'end CPU s':>9} {'answered':>8} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    print(header)
    print("-" * len(header))
    for who, r in results.items():
        print(f"{who:<11} {r['parked_cpu_s']:>10.2f} {r['idle_cpu_pct']:>10.1f} {r['complete_cpu_s']:>9.2f} "
              f"{r['answered']:>8} {r['p50']:>7.1f} {r['p99']:>7.1f} {r['max']:>7.1f}")
    ours_r, ref_r = results["cometjobs"], results["reference"]
    print(f"{'ratio':<11} {ours_r['parked_cpu_s'] / max(ref_r['parked_cpu_s'], 1e-9):>10.2f} {'':>10} "
          f"{ours_r['complete_cpu_s'] / max(ref_r['complete_cpu_s'], 1e-9):>9.2f} {'':>8} "
          f"{ours_r['p50'] / max(ref_r['p50'], 1e-9):>7.2f} {ours_r['p99'] / max(ref_r['p99'], 1e-9):>7.2f}")
    print(f"\np99 target < 250 ms: {'met' if ours_r['p99'] < 250 else 'NOT met'} "
          f"(answered before their job ended: {ours_r['early']} ours, {ref_r['early']} reference)\n")


def _pid_on(port: int) -> int:
    """The process listening on `port` (the server, not a wrapper around it)."""
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return conn.pid
    raise SystemExit(f"nothing listens on port {port}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
