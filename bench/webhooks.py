"""`make bench-webhooks`: deliver 10,000 webhook events to a fast local receiver.

A throwaway Postgres database gets one client, N finished jobs and one pending
`job.succeeded` delivery per job (the rows `create_event` would have written).
Then, each in a fresh process:

- the ceilings: bare pooled clients with the same concurrency POST the same N
  bodies to the same receiver (no database, no signing): `httpx.AsyncClient`
  with one pool, httpx with pools of 8, and aiohttp (the delivery path's client);
- the delivery path: `app.webhooks.service.deliver_due()`, the beat-driven batch
  sender a worker runs (claim, sign, SSRF-checked connect, send, record every
  attempt), called until nothing is pending;
- the ceiling again (the machine may be busy; both runs are printed).

The receiver is uvicorn (uvloop + httptools) with a minimal ASGI app in its own
process. Everything shares this machine's CPUs.

    python -m bench.webhooks [--events 10000] [--workers 1] [--concurrency 64] [--batch 500]

`BENCH_PROFILE=/tmp/deliver.prof` runs the delivery process under cProfile (the
claims and records run in a thread the profile does not see).
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

import httpx

from bench.common import free_port, wait_http

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The fast receiver: read the body, answer 200 "ok"."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _payload(job_id: str, client_id: str, base_url: str) -> str:
    """About what a finished Sora job's `job.succeeded` event weighs (~1.3 KB)."""
    now = "2026-11-25T20:05:18.123456+00:00"
    data = {
        "id": job_id, "object": "job", "model": "sora-2", "family": "sora", "kind": "video",
        "status": "succeeded", "progress": 100,
        "input": {"prompt": "a paper boat drifting down a rainy street", "seconds": "8", "size": "1280x720"},
        "metadata": {"order": 1234, "client": client_id}, "error": None,
        "artifacts": [
            {"name": name, "content_type": ctype, "size_bytes": size, "sha256": secrets.token_hex(32),
             "url": f"{base_url}/v1/jobs/{job_id}/artifacts/{name}", "expires_at": None, "deleted_at": None}
            for name, ctype, size in (("video", "video/mp4", 3145728), ("thumbnail", "image/webp", 48213))
        ],
        "upstream": {"id": f"video_{secrets.token_hex(12)}", "status": "completed"},
        "parent_job_id": None, "created_at": now, "updated_at": now, "completed_at": now,
    }
    return json.dumps({"id": f"evt_{uuid.uuid4().hex[:26]}", "type": "job.succeeded", "created_at": now,
                       "data": data}, separators=(",", ":"))


def seed(events: int, url: str) -> None:
    """Runs in the bench's own environment: migrate, then insert the rows."""
    from sqlalchemy import insert

    from app.clients.service import create as create_client
    from app.core.db import session_scope, utcnow
    from app.core.ids import new_id
    from app.core.migrate import upgrade
    from app.jobs.models import Job
    from app.webhooks.models import WebhookDelivery

    upgrade()
    now = utcnow()
    with session_scope() as session:
        client = create_client(session, "bench", webhook_url=url).client
        client_id = client.id
    for start in range(0, events, 2000):
        jobs, deliveries = [], []
        for _ in range(start, min(events, start + 2000)):
            job_id = new_id("job")
            jobs.append({
                "id": job_id, "client_id": client_id, "model": "sora-2", "family": "sora", "kind": "video",
                "input": {}, "meta": {}, "webhook_url": url, "webhook_events": [],
                "storage_prefix": f"{client_id}/{job_id}", "status": "succeeded", "progress": 100,
                "created_at": now, "updated_at": now, "status_changed_at": now, "progress_at": now,
                "completed_at": now,
            })
            payload = _payload(job_id, client_id, "http://127.0.0.1:8000")
            deliveries.append({
                "id": new_id("msg"), "job_id": job_id, "client_id": client_id, "seq": 1,
                "event_id": json.loads(payload)["id"], "event_type": "job.succeeded", "url": url,
                "payload": payload, "status": "pending", "attempts": 0, "next_attempt_at": now,
                "created_at": now, "updated_at": now,
            })
        with session_scope() as session:
            session.execute(insert(Job), jobs)
            session.execute(insert(WebhookDelivery), deliveries)


def deliver() -> None:
    """One worker process: the real batch sender until nothing is pending."""
    from sqlalchemy import func, select

    from app.core.aio import shutdown
    from app.core.db import session_scope
    from app.core.logging import configure_logging
    from app.core.settings import get_settings
    from app.webhooks.models import WebhookDelivery
    from app.webhooks.service import deliver_due

    settings = get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)

    def pending() -> int:
        with session_scope() as session:
            return session.scalar(select(func.count()).where(WebhookDelivery.status == "pending")) or 0

    counts: dict[str, int] = {}
    started = time.perf_counter()
    while True:
        for outcome, n in deliver_due().items():
            counts[outcome] = counts.get(outcome, 0) + n
        if not pending():
            break
    elapsed = time.perf_counter() - started
    shutdown()
    print(json.dumps({"seconds": elapsed, "counts": counts}))


def ceiling(url: str, events: int, concurrency: int, client: str) -> None:
    """The same bodies over a bare pooled client (no database, signing or checks):
    httpx with one pool, httpx with pools of 8 used round-robin, or aiohttp."""
    bodies = [_payload(f"job_{i:026d}", "cli_bench", "http://127.0.0.1:8000").encode() for i in range(events)]
    headers = {"content-type": "application/json"}

    async def run() -> tuple[float, int]:
        gate = asyncio.Semaphore(concurrency)
        ok = 0
        if client == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

            async def post(i: int, body: bytes) -> int:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    return response.status

            close = session.close
        else:
            shards = 1 if client == "httpx" else -(-concurrency // 8)
            per_shard = -(-concurrency // shards)
            limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
            clients = [httpx.AsyncClient(limits=limits, timeout=10) for _ in range(shards)]

            async def post(i: int, body: bytes) -> int:
                return (await clients[i % shards].post(url, content=body, headers=headers)).status_code

            async def close() -> None:
                for c in clients:
                    await c.aclose()

        async def one(i: int, body: bytes) -> None:
            nonlocal ok
            async with gate:
                status = await post(i, body)
            ok += status == 200

        started = time.perf_counter()
        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        elapsed = time.perf_counter() - started
        await close()
        return elapsed, ok

    elapsed, ok = asyncio.run(run())
    print(json.dumps({"seconds": elapsed, "ok": ok}))


def _run_json(args: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    with log.open("ab") as err:
        out = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=err)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed; see {log}")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="delivery processes running at once")
    parser.add_argument("--concurrency", type=int, default=64, help="COMETJOBS_WEBHOOK_CONCURRENCY")
    parser.add_argument("--batch", type=int, default=500, help="COMETJOBS_WEBHOOK_BATCH_SIZE")
    parser.add_argument("--log-level", default="INFO", help="the worker's COMETJOBS_LOG_LEVEL (INFO: a line per attempt)")
    parser.add_argument("--pg", default=os.environ.get("COMETJOBS_BENCH_PG", DEFAULT_PG),
                        help="Postgres server URL (a database is created and dropped on it)")
    parser.add_argument("--role", choices=["seed", "deliver", "ceiling"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--client", default="httpx", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "seed":
        return seed(args.events, args.url)
    if args.role == "deliver":
        if os.environ.get("BENCH_PROFILE"):  # e.g. BENCH_PROFILE=/tmp/deliver.prof: cProfile the worker path
            import cProfile

            return cProfile.runctx("deliver()", globals(), locals(), os.environ["BENCH_PROFILE"])
        return deliver()
    if args.role == "ceiling":
        return ceiling(args.url, args.events, args.concurrency, args.client)

    import psycopg

    root = Path(tempfile.mkdtemp(prefix="cometjobs-bench-webhooks-"))
    db = f"cj_bench_{uuid.uuid4().hex[:8]}"
    admin = args.pg.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    env = {
        **os.environ,
        "COMETJOBS_ENV": "test",
        "COMETJOBS_DATA_DIR": str(root),
        "COMETJOBS_DATABASE_URL": f"{args.pg}/{db}",
        "COMETJOBS_BROKER_URL": "redis://127.0.0.1:1/0",  # never reached: deliver_due publishes nothing here
        "COMETJOBS_WEBHOOK_ALLOWED_CIDRS": "127.0.0.0/8",
        "COMETJOBS_WEBHOOK_CONCURRENCY": str(args.concurrency),
        "COMETJOBS_WEBHOOK_BATCH_SIZE": str(args.batch),
        "COMETJOBS_WEBHOOK_BUDGET": "600",
        # A worker's logging as in production: one JSON line per attempt.
        "COMETJOBS_LOG_FORMAT": "json",
        "COMETJOBS_LOG_LEVEL": args.log_level,
    }
    me = [sys.executable, "-m", "bench.webhooks"]
    log = root / "bench.log"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.webhooks:receiver_app", "--port", str(port), "--loop", "uvloop",
         "--http", "httptools", "--no-access-log", "--log-level", "warning", "--backlog", "4096"],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True,
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        wait_http(url, receiver)
        print(f"webhooks bench: {args.events} events, concurrency {args.concurrency}, batch {args.batch}, "
              f"{args.workers} delivery process(es), {os.cpu_count()} CPUs")
        started = time.perf_counter()
        subprocess.run([*me, "--role", "seed", "--events", str(args.events), "--url", url], env=env, check=True)
        print(f"  seeded {args.events} jobs and deliveries in {time.perf_counter() - started:.1f} s")

        layouts = {"httpx, one pool": "httpx", "httpx, pools of 8": "httpx-sharded", "aiohttp": "aiohttp"}

        def ceilings(label: str) -> dict[str, float]:
            rates = {}
            for name, client in layouts.items():
                out = _run_json([*me, "--role", "ceiling", "--events", str(args.events), "--url", url,
                                 "--concurrency", str(args.concurrency), "--client", client], env, log)
                rates[client] = args.events / out["seconds"]
                print(f"  {label} bare {name:<17} {rates[client]:8.0f} req/s ({out['seconds']:.2f} s, {out['ok']} ok)")
            return rates

        before = ceilings("ceiling:")

        procs = [subprocess.Popen([*me, "--role", "deliver"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
                 for _ in range(args.workers)]
        results = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"a delivery process failed (exit {proc.returncode})")
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        seconds = max(r["seconds"] for r in results)
        counts: dict[str, int] = {}
        for r in results:
            for k, v in r["counts"].items():
                counts[k] = counts.get(k, 0) + v
        total = args.events / seconds
        per_process = total / args.workers
        print(f"  deliver_due (the worker path):      {total:8.0f} deliveries/s in all, {per_process:.0f} per worker "
              f"process ({seconds:.2f} s, outcomes {counts})")

        after = ceilings("again:  ")
        ratios = ", ".join(f"{name} {per_process / max(before[client], after[client]):.0%}"
                           for name, client in layouts.items())
        print(f"  delivery path per process / best ceiling of the run (target >= 60%): {ratios}")
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
