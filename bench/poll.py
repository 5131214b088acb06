"""`make bench-poll`: the batched poller against N in-flight jobs, one process.

For each N (default 1,000 and 10,000) it measures, against the same emulator:

1. drain: every job due at once; the poller (the real `poll_due`, called as beat
   ticks would call it, in this one process) polls each once. Polls per second and
   CPU seconds per 1,000 polls.
2. ceiling: a bare pooled aiohttp client (the poller's own library) with the same
   concurrency GETs the same N task URLs. The poller's target is >= 70% of this.
3. steady state: due times spread over the first poll interval, ticks every
   COMETJOBS_POLL_TICK for --seconds, with the real per-model schedule (video:
   10 s, backing off to 30 s). Lag = poll sent - poll due, p50/p99; the target is
   p99 under one poll interval.

    python -m bench.poll [--jobs 1000,10000] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from datetime import timedelta
from typing import Any

import httpx

from bench.common import emulator, percentile, scratch_database

KEY = "bench-poll-key"


def _configure(database_url: str, emulator_url: str) -> None:
    os.environ.update({
        "COMETJOBS_ENV": "test",
        "COMETJOBS_DATABASE_URL": database_url,
        "COMETJOBS_COMETAPI_BASE_URL": emulator_url,
        "COMETJOBS_COMETAPI_KEY": KEY,
        "COMETJOBS_LOG_LEVEL": "WARNING",
        "COMETJOBS_LOG_FORMAT": "json",
    })
    os.environ.pop("COMETJOBS_MODELS_FILE", None)
    from app.core.db import reset_engine
    from app.core.settings import get_settings

    get_settings.cache_clear()
    reset_engine()


def _seed(n: int, emulator_url: str, spread: float) -> list[str]:
    from sqlalchemy import delete, insert

    from app.clients.models import Client
    from app.clients.service import create
    from app.core.db import session_scope, utcnow
    from app.core.ids import new_id
    from app.jobs.models import Job, JobPoll

    http = httpx.Client(base_url=emulator_url, timeout=120)
    http.post("/_emulator/reset").raise_for_status()
    ids = http.post("/_emulator/tasks/bulk", json={
        "family": "sora", "model": "sora-2", "count": n, "job_seconds": 10**6,
    }).json()["ids"]
    now = utcnow()
    with session_scope() as session:
        session.execute(delete(Job))
        session.execute(delete(Client))
        client = create(session, "bench").client
        rows, schedules = [], []
        for upstream_id in ids:
            job_id = new_id("job")
            schedules.append({"job_id": job_id, "due_at": now + timedelta(seconds=random.uniform(0, spread)),
                              "stall_at": now + timedelta(hours=1), "poll_count": 0, "poll_errors": 0})
            rows.append({
                "id": job_id, "client_id": client.id, "model": "sora-2", "family": "sora", "kind": "video",
                "input": {"prompt": "bench"}, "meta": {}, "webhook_events": [],
                "storage_prefix": f"{client.id}/{job_id}/x", "status": "running", "progress": 1,
                "upstream_id": upstream_id, "upstream_status": "in_progress",
                "deadline_at": now + timedelta(hours=1),
                "timeout_at": now + timedelta(hours=1), "created_at": now, "updated_at": now,
                "status_changed_at": now, "progress_at": now,
            })
        for start in range(0, len(rows), 2000):
            session.execute(insert(Job), rows[start : start + 2000])
            session.execute(insert(JobPoll), schedules[start : start + 2000])
    # As autovacuum would in steady state: without it the previous round's dead rows and
    # stale statistics (a tenth of the rows) slow the next round's claims several-fold.
    from app.core.db import get_engine

    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE jobs, job_polls")
    return ids


class LagRecorder:
    """Collects every poll-lag observation the poller makes (it feeds a histogram)."""

    def __init__(self) -> None:
        from app.core import metrics

        self.values: list[float] = []
        self._original = metrics.POLL_LAG.observe
        metrics.POLL_LAG.observe = self._observe  # type: ignore[method-assign]

    def _observe(self, value: float, *args: Any, **kwargs: Any) -> None:
        self.values.append(value)
        self._original(value, *args, **kwargs)


def drain(n: int) -> tuple[float, float]:
    from app.jobs.poller import poll_due

    cpu, started, polled = time.process_time(), time.perf_counter(), 0
    while polled < n:
        polled += poll_due().get("polled", 0)
    elapsed = time.perf_counter() - started
    return n / elapsed, (time.process_time() - cpu) / n * 1000


async def _ceiling(emulator_url: str, ids: list[str], concurrency: int) -> float:
    """The same GETs from a bare pooled client of the poller's library (aiohttp)."""
    import aiohttp

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"},
                                     connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        gate = asyncio.Semaphore(concurrency)

        async def one(task_id: str) -> None:
            async with gate, http.get(f"{emulator_url}/v1/videos/{task_id}") as response:
                response.raise_for_status()
                await response.read()

        await one(ids[0])
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in ids))
        return len(ids) / (time.perf_counter() - started)


def steady(seconds: float, lag: LagRecorder) -> tuple[int, float]:
    from app.core.settings import get_settings
    from app.jobs.poller import poll_due

    tick = get_settings().poll_tick.total_seconds()
    lag.values.clear()
    end = time.monotonic() + seconds
    polled = 0
    cpu = time.process_time()
    while time.monotonic() < end:
        started = time.monotonic()
        polled += poll_due().get("polled", 0)
        time.sleep(max(0.0, tick - (time.monotonic() - started)))
    return polled, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="1000,10000")
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    sizes = [int(x) for x in args.jobs.split(",")]

    with emulator(api_key=KEY) as emulator_url, scratch_database("bench_poll") as database_url:
        _configure(database_url, emulator_url)
        from app.core.settings import get_settings
        from app.providers.registry import get_model

        settings = get_settings()
        spec = get_model("sora-2")
        lag = LagRecorder()
        print(f"poller: batch {settings.poll_batch_size}, concurrency {settings.poll_concurrency} per family, "
              f"tick {settings.poll_tick.total_seconds():g}s; sora-2 polls after {spec.poll_first_delay:g}s, "
              f"then every {spec.poll_interval:g}s backing off to {spec.poll_interval_max:g}s")
        print(f"{'jobs':>7} {'poller/s':>9} {'ceiling/s':>10} {'ratio':>6} {'cpu s/1k':>9} "
              f"{'steady polls/s':>15} {'lag p50':>8} {'lag p99':>8} {'interval':>9}")
        for n in sizes:
            ids = _seed(n, emulator_url, spread=0)
            rate, cpu_per_k = drain(n)
            ceiling = asyncio.run(_ceiling(emulator_url, ids, settings.poll_concurrency))
            _seed(n, emulator_url, spread=spec.poll_first_delay)
            polled, _cpu = steady(args.seconds, lag)
            p50, p99 = percentile(lag.values, 0.5), percentile(lag.values, 0.99)
            print(f"{n:>7} {rate:>9.0f} {ceiling:>10.0f} {rate / ceiling:>6.0%} {cpu_per_k:>9.3f} "
                  f"{polled / args.seconds:>15.0f} {p50:>7.2f}s {p99:>7.2f}s {spec.poll_interval:>8.0f}s",
                  flush=True)
        print("targets: poller >= 70% of the ceiling; p99 lag < one poll interval at 10,000 jobs")
        from app.core import aio

        aio.shutdown()


if __name__ == "__main__":
    sys.exit(main())
