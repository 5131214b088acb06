"""`make bench-fairness`: one busy client, one quiet client, one upstream account.

Client A submits --a-jobs jobs (default 2,000); --delay seconds later client B submits
--b-jobs (default 20). The upstream (the emulator) lets at most --cap tasks run at once
(`--max-in-flight`: beyond it, a create is answered 429 with Retry-After) and each
takes --job-seconds. The same run twice, on a whole real deployment (API, worker,
scheduler, emulator, Postgres, Redis): with the dispatcher (`DISPATCH=fair`,
`UPSTREAM_MAX_IN_FLIGHT=cap`), then without it (`DISPATCH=fifo`: every job submitted as
it arrives). Each run lasts until all of B's jobs were submitted upstream or --window
seconds passed; it prints B's and A's queue wait (acceptance to create call) p50/p99,
the 429s the upstream answered and the jobs that failed. A wait still running at the end
of the window is counted as the window's length (marked `>=`).

    python -m bench.fairness [--a-jobs 2000] [--b-jobs 20] [--cap 8] [--job-seconds 5] [--window 180]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.stack import Stack  # noqa: E402 - the tests' whole-deployment helper


def _submit(stack: Stack, client: dict[str, Any], n: int, tag: str) -> list[str]:
    def one(i: int) -> str:
        response = stack.http.post("/v1/jobs", headers=client["headers"], json={
            "model": "sora-2", "input": {"prompt": f"{tag}-{i}"}})
        response.raise_for_status()
        return str(response.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _waits(stack: Stack, ids: list[str], now_sql: str = "now()") -> tuple[list[float], int]:
    rows = stack.sql(
        f"SELECT EXTRACT(EPOCH FROM (COALESCE(submitted_at, {now_sql}) - created_at)), submitted_at IS NULL "
        "FROM jobs WHERE id = ANY(%s)", ids)
    return [float(r[0]) for r in rows], sum(1 for r in rows if r[1])


# Polls as often as the tests do: a slot is held until a poll sees the task finished, so
# the catalogue's production intervals would measure polling delay, not dispatch.
QUICK_POLLS = """
[kinds.video]
poll_first_delay = 0.5
poll_interval = 0.5
poll_interval_max = 1.0
"""


def run(mode: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    models = root / "models.toml"
    models.write_text(QUICK_POLLS)
    overrides = {
        "COMETJOBS_MODELS_FILE": str(models),
        "COMETJOBS_DISPATCH": mode, "COMETJOBS_UPSTREAM_MAX_IN_FLIGHT": str(args.cap),
        "COMETJOBS_WORKER_CONCURRENCY": "8",
        "COMETJOBS_POLL_TICK": "1", "COMETJOBS_DISPATCH_TICK": "0.2", "COMETJOBS_SUBMIT_MAX_ATTEMPTS": "10",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMETJOBS_")}
    env.setdefault("COMETJOBS_BROKER_URL", os.environ.get("COMETJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    stack = Stack(f"fair_{mode}", root, env, overrides=overrides)
    try:
        stack.create_database()
        stack.start_emulator("--max-in-flight", str(args.cap), "--job-seconds", str(args.job_seconds),
                             "--retry-after", "2")
        stack.start_api()
        stack.start_worker("worker")
        stack.start_scheduler()
        a, b = stack.create_client("busy"), stack.create_client("quiet")
        started = time.monotonic()
        a_ids = _submit(stack, a, args.a_jobs, "a")
        time.sleep(args.delay)
        b_ids = _submit(stack, b, args.b_jobs, "b")
        while time.monotonic() - started < args.window:
            if _waits(stack, b_ids)[1] == 0:
                break
            time.sleep(1)
        b_waits, b_open = _waits(stack, b_ids)
        a_waits, a_open = _waits(stack, a_ids)
        failed = stack.sql("SELECT count(*) FROM jobs WHERE status = 'failed'")[0][0]
        throttled = stack.emulator.stats().get("faults", {}).get("saturated", 0)
        return {
            "mode": mode, "b": b_waits, "b_open": b_open, "a": a_waits, "a_open": a_open,
            "a_submitted": args.a_jobs - a_open, "throttled": throttled, "failed": failed,
            "seconds": time.monotonic() - started,
        }
    finally:
        stack.stop()


def _fmt(values: list[float], still_open: int, q: float) -> str:
    value = percentile(values, q)
    return f"{'>=' if still_open and q >= 1 - still_open / max(1, len(values)) else ''}{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a-jobs", type=int, default=2000)
    parser.add_argument("--b-jobs", type=int, default=20)
    parser.add_argument("--cap", type=int, default=8)
    parser.add_argument("--job-seconds", type=float, default=5.0)
    parser.add_argument("--delay", type=float, default=3.0, help="seconds between A's burst and B's")
    parser.add_argument("--window", type=float, default=180.0)
    parser.add_argument("--modes", default="fair,fifo")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cometjobs-bench-fairness-"))
    results = [run(mode, args, root) for mode in args.modes.split(",")]

    print(f"\nbench-fairness: A {args.a_jobs} jobs, B {args.b_jobs} jobs {args.delay:g} s later; upstream cap "
          f"{args.cap}, {args.job_seconds:g} s per task; window {args.window:g} s\n")
    header = (f"{'dispatch':<8} {'B p50 s':>9} {'B p99 s':>9} {'A p50 s':>9} {'A p99 s':>9} {'A submitted':>12} "
              f"{'429s':>6} {'failed':>7} {'ran s':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['mode']:<8} {_fmt(r['b'], r['b_open'], 0.5):>9} {_fmt(r['b'], r['b_open'], 0.99):>9} "
              f"{_fmt(r['a'], r['a_open'], 0.5):>9} {_fmt(r['a'], r['a_open'], 0.99):>9} "
              f"{r['a_submitted']:>12} {r['throttled']:>6} {r['failed']:>7} {r['seconds']:>6.0f}")
    print("\nA wait still running at the end of the window counts as the window so far (>=).\n")


if __name__ == "__main__":
    main()
