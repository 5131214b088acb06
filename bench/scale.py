"""`make bench-scale`: a deployment with a long history and 100,000 jobs in flight.

Seeds, with set-based SQL, rows shaped like the API's and the pipeline's own:

- `--history` finished jobs (default 1,000,000) spread over the last 100 days, each with
  its five status events, its delivered `job.succeeded` webhook and attempt, and its
  two artifact rows (deleted past the 30-day result retention). The oldest tenth is past
  the 90-day row retention, so the `purge` tick works during the run.
- `--queued` (60,000), `--running` (35,000, each with a task in the emulator and a poll
  schedule) and `--collecting` (5,000, finished upstream) jobs of one client whose
  webhook URL is a counting receiver.

Then runs the real worker (`--concurrency` processes) and scheduler against the emulator
for `--minutes` and prints, per minute: jobs submitted, polls answered, jobs collected,
webhooks delivered, jobs timed out, purged history rows, each tick's mean round time,
and the broker's queue lengths; then table and index sizes and the HOT-update ratio of
the rows the run updated.

The reference: the least the same upstream work needs on this machine — `--concurrency`
processes, each with 16 concurrent loops calling the emulator's create, poll and
download endpoints, with no database, broker or bookkeeping — measured in the same run
for `--reference-seconds`.
The ratio is the deployment's upstream calls per second over the reference's.

    python -m bench.scale [--history 1000000] [--queued 60000] [--running 35000]
                          [--collecting 5000] [--minutes 5] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port  # noqa: E402
from tests.support.stack import Stack  # noqa: E402 - the tests' whole-deployment helper

QUEUES = ("submit", "poll", "collect", "webhooks", "maintenance")
TICKS = ("poll", "dispatch", "sweep", "deliver", "expire", "purge")
UPDATED_TABLES = ("jobs", "job_polls", "webhook_deliveries")
REFERENCE_LOOPS = 16
SIZED_TABLES = ("jobs", "job_polls", "job_events", "webhook_deliveries", "webhook_attempts", "artifacts")


class CountingReceiver:
    """A webhook receiver that answers 200 and counts."""

    def __init__(self) -> None:
        self.count = 0
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    owner.count += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


# -- seeding ---------------------------------------------------------------------------

JOB_COLUMNS = (
    "id, client_id, model, family, kind, input, metadata, webhook_url, webhook_events, storage_prefix, status, "
    "priority, cost, nudges, progress, upstream_id, upstream_status, upstream_payload, submit_attempts, "
    "collect_attempts, slot_at, due_at, queue_deadline_at, deadline_at, timeout_at, created_at, updated_at, "
    "status_changed_at, progress_at, submitted_at, completed_at"
)

def _api_input() -> str:
    """The input as the API stores it: validated and normalised by the model's adapter."""
    import json

    from app.providers.registry import adapter_for, get_model
    from tests.providers.video_support import no_records

    spec = get_model("sora-2")
    return json.dumps(adapter_for(spec).validate(
        spec, {"prompt": "a lighthouse at dawn, waves breaking on the rocks, cinematic"}, no_records()))


PROMPT = _api_input()
PAYLOAD = (
    '{"type": "job.succeeded", "id": "evt", "timestamp": "2026-11-30T00:00:00Z", "data": {"id": "job", '
    '"model": "sora-2", "status": "succeeded", "artifacts": [{"name": "video", "content_type": "video/mp4", '
    '"size_bytes": 1048576, "url": "https://jobs.example/v1/jobs/job/artifacts/video"}], "metadata": {}}}'
)


def seed_history(conn: psycopg.Connection, client: dict[str, Any], n: int) -> None:
    """`n` succeeded jobs over the last 100 days, oldest first, and everything they left."""
    if n <= 0:
        return
    cid = client["id"]
    script = f"""
        CREATE TEMP TABLE h AS
        SELECT g, 'job_h' || lpad(g::text, 21, '0') AS id,
               now() - ((%(n)s - g)::float / %(n)s) * interval '100 days' - interval '1 hour' AS t
        FROM generate_series(1, %(n)s) g;
        INSERT INTO jobs ({JOB_COLUMNS})
        SELECT id, %(cid)s::text, 'sora-2', 'sora', 'video', %(prompt)s::jsonb, '{{}}', %(url)s::text, '[]',
               %(cid)s::text || '/' || id || '/x', 'succeeded', 1, 0.4, 0, 100, 'video_h' || g, 'completed',
               '{{"status": "completed", "progress": 100}}', 1, 1, NULL, NULL, t + interval '1 hour',
               t + interval '2 hours', NULL, t, t + interval '3 min', t + interval '3 min', t + interval '2 min',
               t + interval '5 s', t + interval '3 min'
        FROM h;
        INSERT INTO job_events (job_id, type, status, message, data, created_at)
        SELECT id, 'status', s.status, s.message, '{{}}', t + s.after
        FROM h CROSS JOIN (VALUES ('queued', 'accepted', interval '0'),
                                  ('submitting', NULL, interval '1 s'),
                                  ('running', 'submitted as video', interval '5 s'),
                                  ('collecting', NULL, interval '2 min'),
                                  ('succeeded', 'stored 2 artifacts', interval '3 min')) AS s(status, message, after);
        INSERT INTO webhook_deliveries (id, job_id, client_id, seq, event_id, event_type, url, payload, status,
                                        attempts, next_attempt_at, last_status_code, created_at, updated_at,
                                        delivered_at)
        SELECT 'dlv_h' || lpad(g::text, 21, '0'), id, %(cid)s::text, 1, 'evt_h' || lpad(g::text, 21, '0'),
               'job.succeeded', %(url)s::text, %(payload)s::text, 'delivered', 1, NULL, 200, t + interval '3 min',
               t + interval '3 min', t + interval '3 min'
        FROM h;
        INSERT INTO webhook_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms, response_body)
        SELECT 'att_h' || lpad(g::text, 21, '0'), 'dlv_h' || lpad(g::text, 21, '0'), 1, t + interval '3 min', 200,
               12, 'ok'
        FROM h;
        INSERT INTO artifacts (id, job_id, name, storage_key, content_type, size_bytes, sha256, created_at,
                               expires_at, deleted_at)
        SELECT 'art_' || a.name || lpad(g::text, 21, '0'), id, a.name, %(cid)s::text || '/' || id || '/x/' || a.name,
               a.content_type, a.size, repeat('ab', 32), t + interval '3 min', t + interval '30 days 3 min',
               CASE WHEN t + interval '30 days 3 min' < now() THEN t + interval '30 days 4 min' END
        FROM h CROSS JOIN (VALUES ('video', 'video/mp4', 4194304), ('thumbnail', 'image/webp', 24576))
             AS a(name, content_type, size);
        DROP TABLE h
    """.replace("%(n)s", str(int(n)))
    params = {"cid": cid, "prompt": PROMPT, "url": client["webhook_url"], "payload": PAYLOAD}
    for statement in script.split(";"):
        names = set(re.findall(r"%\((\w+)\)s", statement))
        conn.execute(statement, {k: v for k, v in params.items() if k in names})


def seed_active(conn: psycopg.Connection, client: dict[str, Any], kind: str, upstream_ids: list[str],
                count: int, deadlines: dict[str, float]) -> None:
    """`count` jobs in `kind` (queued, running or collecting), shaped as the pipeline leaves them."""
    if count <= 0:
        return
    letter = kind[0]
    common = {"cid": client["id"], "prompt": PROMPT, "url": client["webhook_url"], "ids": upstream_ids or [""],
              "queue_s": deadlines["queue"], "abs_s": deadlines["absolute"], "stall_s": deadlines["stall"]}
    values = {
        "queued": ("'queued'", "0", "NULL", "NULL", "NULL", "NULL", "now()",
                   "LEAST(t + make_interval(secs => %(queue_s)s), t + make_interval(secs => %(abs_s)s))", "NULL"),
        "running": ("'running'", "5", "u.id", "'in_progress'", "NULL", "now()", "NULL",
                    "t + make_interval(secs => %(abs_s)s)", "now()"),
        "collecting": ("'collecting'", "100", "u.id", "'completed'", "'{\"status\": \"completed\"}'", "now()",
                       "now()", "NULL", "now()"),
    }[kind]
    status, progress, upstream, upstream_status, payload, slot, due, timeout, submitted = values
    source = ("(SELECT g, now() - random() * interval '5 min' AS t FROM generate_series(1, %(count)s) g) s"
              if kind == "queued" else
              "(SELECT n AS g, id, now() - random() * interval '5 min' AS t "
              " FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS x(id, n)) s JOIN LATERAL (SELECT s.id) u ON true")
    conn.execute(f"""
        INSERT INTO jobs ({JOB_COLUMNS})
        SELECT 'job_{letter}' || lpad(g::text, 21, '0'), %(cid)s::text, 'sora-2', 'sora', 'video', %(prompt)s::jsonb,
               '{{}}', %(url)s::text, '[]', %(cid)s::text || '/job_{letter}' || g || '/x', {status}, 1, 0.4, 0, {progress},
               {upstream}, {upstream_status}, {payload}, {0 if kind == 'queued' else 1}, 0, {slot}, {due},
               t + make_interval(secs => %(queue_s)s), t + make_interval(secs => %(abs_s)s), {timeout},
               t, now(), now(), now(), {submitted}, NULL
        FROM {source}
    """.replace("%(count)s", str(int(count))), common)
    conn.execute(f"""
        INSERT INTO job_events (job_id, type, status, message, data, created_at)
        SELECT id, 'status', status, NULL, '{{}}', created_at FROM jobs WHERE id LIKE 'job_{letter}%%'
    """)
    if kind == "running":
        conn.execute("""
            INSERT INTO job_polls (job_id, due_at, claimed_due_at, stall_at, poll_count, poll_errors)
            SELECT id, now() + random() * interval '30 s', NULL, now() + make_interval(secs => %(stall_s)s), 1, 0
            FROM jobs WHERE id LIKE 'job_r%%'
        """, common)


def bulk_tasks(stack: Stack, count: int, job_seconds: list[float]) -> list[str]:
    """Emulator tasks for jobs already past their create call, finishing at spread-out times."""
    ids: list[str] = []
    share = -(-count // len(job_seconds)) if count else 0
    for seconds in job_seconds:
        n = min(share, count - len(ids))
        if n <= 0:
            break
        response = httpx.post(f"{stack.emulator.url}/_emulator/tasks/bulk", timeout=300, json={
            "family": "sora", "model": "sora-2", "count": n, "job_seconds": seconds})
        response.raise_for_status()
        ids += response.json()["ids"]
    return ids


# -- measuring -------------------------------------------------------------------------

def _scrape(port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'cometjobs_tick_duration_seconds_(sum|count)\{tick="(\w+)"\} (\S+)', line)
        if match:
            out[f"{match[2]}_{match[1]}"] = float(match[3])
    return out


class Sampler:
    def __init__(self, stack: Stack, receiver: CountingReceiver, metrics_port: int) -> None:
        self.stack, self.receiver, self.metrics_port = stack, receiver, metrics_port
        self.redis = redis.Redis.from_url(stack.env["COMETJOBS_BROKER_URL"])
        self.prefix = stack.env["COMETJOBS_BROKER_KEY_PREFIX"]
        self.start_event = stack.sql("SELECT coalesce(max(id), 0) FROM job_events")[0][0]

    def snapshot(self) -> dict[str, Any]:
        counts = dict(self.stack.sql(
            "SELECT status, count(*) FROM job_events WHERE id > %s AND type = 'status' "
            "AND status IN ('running', 'succeeded', 'timed_out', 'failed') GROUP BY status", self.start_event))
        history = self.stack.sql("SELECT count(*) FROM jobs WHERE id >= 'job_h' AND id < 'job_i'")[0][0]
        stats = self.stack.emulator.stats()
        return {
            "submitted": counts.get("running", 0), "collected": counts.get("succeeded", 0),
            "timed_out": counts.get("timed_out", 0), "failed": counts.get("failed", 0),
            "polls": stats.get("polls", 0), "creates": stats.get("creates", 0),
            "downloads": stats.get("downloads", 0), "delivered": self.receiver.count, "history": history,
            "ticks": _scrape(self.metrics_port),
            "queues": {q: self.redis.llen(f"{self.prefix}{q}") for q in QUEUES},
        }


def _tick_means(before: dict[str, float], after: dict[str, float]) -> dict[str, str]:
    means = {}
    for tick in TICKS:
        rounds = after.get(f"{tick}_count", 0) - before.get(f"{tick}_count", 0)
        spent = after.get(f"{tick}_sum", 0) - before.get(f"{tick}_sum", 0)
        means[tick] = f"{spent / rounds:.2f}" if rounds else "-"
    return means


def _hot(stack: Stack) -> dict[str, tuple[int, int]]:
    rows = stack.sql("SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                     list(UPDATED_TABLES))
    return {name: (int(upd), int(hot)) for name, upd, hot in rows}


def _sizes(stack: Stack) -> list[tuple[str, int, int, int]]:
    return [(name, int(rows), int(table), int(index)) for name, rows, table, index in stack.sql(
        "SELECT c.relname, c.reltuples, pg_table_size(c.oid), pg_indexes_size(c.oid) FROM pg_class c "
        "WHERE c.relname = ANY(%s) ORDER BY c.relname", list(SIZED_TABLES))]


# -- the reference ---------------------------------------------------------------------

def _reference_worker(url: str, key: str, seconds: float, out: Any) -> None:
    """One process: REFERENCE_LOOPS concurrent loops of create, poll, download (as the
    poller's concurrency and the worker pool overlap calls), for `seconds`."""
    import asyncio

    import aiohttp  # the poller's client: the cheapest per call here

    async def run() -> int:
        calls = 0
        created: list[str] = []
        end = time.monotonic() + seconds
        async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {key}"}) as http:
            async def loop() -> None:
                nonlocal calls
                while time.monotonic() < end:
                    async with http.post("/v1/videos", data={"model": "sora-2", "prompt": "reference"}) as answer:
                        created.append((await answer.json())["id"])
                    async with http.get(f"/v1/videos/{created[-1]}") as answer:
                        await answer.read()
                    async with http.get(f"/v1/videos/{created[len(created) // 2]}/content") as answer:
                        await answer.read()
                    calls += 3

            await asyncio.gather(*(loop() for _ in range(REFERENCE_LOOPS)))
        return calls

    out.put(asyncio.run(run()))


def reference(stack: Stack, processes: int, seconds: float) -> float:
    """Upstream calls per second that `processes` bare loops get from the emulator."""
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_reference_worker,
                                       args=(stack.emulator.url, stack.emulator_key, seconds, results))
               for _ in range(processes)]
    for w in workers:
        w.start()
    total = sum(results.get(timeout=seconds + 120) for _ in workers)
    for w in workers:
        w.join()
    return total / seconds


# -- the run ---------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=60_000)
    parser.add_argument("--running", type=int, default=35_000)
    parser.add_argument("--collecting", type=int, default=5_000)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--sample", type=float, default=60.0, help="seconds per printed row")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--job-seconds", type=float, default=60.0, help="upstream time of a newly created task")
    parser.add_argument("--reference-seconds", type=float, default=30.0)
    args = parser.parse_args()

    from app.providers.registry import get_model

    spec = get_model("sora-2")
    deadlines = {"queue": spec.queue_deadline, "absolute": spec.absolute_deadline, "stall": spec.stall_deadline}
    root = Path(tempfile.mkdtemp(prefix="cometjobs-bench-scale-"))
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMETJOBS_")}
    env["COMETJOBS_BROKER_URL"] = os.environ.get("COMETJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    stack = Stack("scale", root, env, overrides={
        "COMETJOBS_WORKER_CONCURRENCY": str(args.concurrency),
        "COMETJOBS_WEBHOOK_ALLOWED_CIDRS": "127.0.0.0/8", "COMETJOBS_WEBHOOK_PROGRESS_INTERVAL": "3600",
    })
    receiver = CountingReceiver()
    try:
        stack.create_database()
        stack.start_emulator("--job-seconds", str(args.job_seconds))
        client = stack.create_client("bench", receiver.url)
        client["webhook_url"] = receiver.url
        ref = reference(stack, args.concurrency, args.reference_seconds)
        stack.emulator.reset()
        started = time.monotonic()
        print(f"seeding {args.history:,} finished and {args.queued + args.running + args.collecting:,} active jobs ...",
              flush=True)
        running_ids = bulk_tasks(stack, args.running, [120, 300, 600, 1200, 3600])
        collecting_ids = bulk_tasks(stack, args.collecting, [0])
        with psycopg.connect(host=stack.pg_host, port=stack.pg_port, user="postgres", dbname=stack.db_name,
                             autocommit=True) as conn:
            seed_history(conn, client, args.history)
            seed_active(conn, client, "queued", [], args.queued, deadlines)
            seed_active(conn, client, "running", running_ids, args.running, deadlines)
            seed_active(conn, client, "collecting", collecting_ids, args.collecting, deadlines)
            conn.execute("VACUUM ANALYZE")
        print(f"seeded in {time.monotonic() - started:.0f} s", flush=True)
        hot_before, sizes_before = _hot(stack), _sizes(stack)

        stack.start_worker("worker", "--concurrency", str(args.concurrency))
        stack.start_scheduler("scheduler", "--metrics-port", str(metrics_port))
        sampler = Sampler(stack, receiver, metrics_port)
        previous = sampler.snapshot()
        first = previous
        print(f"\nbench-scale: {args.history:,} finished + {args.queued:,} queued, {args.running:,} running, "
              f"{args.collecting:,} collecting; worker x{args.concurrency}, one scheduler, emulator "
              f"{args.job_seconds:g} s per new task\n")
        header = (f"{'min':>4} {'submits':>8} {'polls':>8} {'collects':>9} {'webhooks':>9} {'timed out':>10} "
                  f"{'purged':>7} | tick mean s: " + " ".join(f"{t:>8}" for t in TICKS) + " | queues: "
                  + " ".join(f"{q:>6}" for q in QUEUES))
        print(header)
        print("-" * len(header))
        rows = 0
        while rows < args.minutes * 60 / args.sample:
            time.sleep(args.sample)
            rows += 1
            now = sampler.snapshot()
            means = _tick_means(previous["ticks"], now["ticks"])
            print(f"{rows * args.sample / 60:>4.0f} {now['submitted'] - previous['submitted']:>8} "
                  f"{now['polls'] - previous['polls']:>8} {now['collected'] - previous['collected']:>9} "
                  f"{now['delivered'] - previous['delivered']:>9} {now['timed_out'] - previous['timed_out']:>10} "
                  f"{previous['history'] - now['history']:>7} | {'':12}"
                  + " ".join(f"{means[t]:>8}" for t in TICKS) + " | " + " ".join(
                      f"{now['queues'][q]:>6}" for q in QUEUES), flush=True)
            previous = now
        seconds = rows * args.sample
        calls = (previous["creates"] + previous["polls"] + previous["downloads"]
                 - first["creates"] - first["polls"] - first["downloads"])
        hot_after, sizes_after = _hot(stack), _sizes(stack)
        print(f"\n{'table':<20} {'rows':>12} {'table MB':>10} {'indexes MB':>11}   (after the run; before)")
        before = {name: (table, index) for name, _rows, table, index in sizes_before}
        for name, n, table, index in sizes_after:
            b_table, b_index = before.get(name, (0, 0))
            print(f"{name:<20} {n:>12,} {table / 2**20:>10.1f} {index / 2**20:>11.1f}   "
                  f"({b_table / 2**20:.1f}; {b_index / 2**20:.1f})")
        print(f"\n{'updated rows':<20} {'updates':>10} {'HOT':>10} {'HOT %':>6}")
        for name in UPDATED_TABLES:
            upd = hot_after.get(name, (0, 0))[0] - hot_before.get(name, (0, 0))[0]
            hot = hot_after.get(name, (0, 0))[1] - hot_before.get(name, (0, 0))[1]
            print(f"{name:<20} {upd:>10,} {hot:>10,} {100 * hot / upd if upd else 0:>6.1f}")
        failed = previous["failed"] - first["failed"]
        states = dict(stack.sql("SELECT status, count(*) FROM jobs WHERE id NOT LIKE 'job_h%%' GROUP BY status"))
        print(f"\nthe jobs that were active at the start, now: {states}")
        print(f"\nupstream calls/s: cometjobs {calls / seconds:.0f}, reference {ref:.0f} "
              f"(bare loops, {args.concurrency} processes): ratio {calls / seconds / ref:.2f}; failed jobs {failed}\n")
    finally:
        receiver.stop()
        stack.stop()


if __name__ == "__main__":
    main()
