"""`make bench-api`: the gateway's throughput next to a lean reference on the same stack.

Starts a scratch Postgres database, one `cometjobs api` process and the reference
(`bench/api_reference_sync.py`: FastAPI + psycopg + redis-py doing only the essential
work, in worker threads as the gateway does; `--reference async` for the async twin),
then drives each with wrk at the same concurrency, one after the other, and
prints requests/s, p50, p99 and the server's CPU per request (its processes' user and
system time over the run) for POST /v1/jobs, GET /v1/jobs/{id} and GET /v1/jobs, with the
ratio ours/reference. `--workers N` also measures `cometjobs api --workers N`.

wrk shares the machine with the server under test (so does the reference): compare
the ratios, not the absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench.common import free_port, scratch_database, wait_http

BODY = {"model": "sora-2", "input": {"prompt": "a paper boat drifting down a rainy street", "seconds": "4"},
        "metadata": {"order": 1234, "team": "video"}}


def _env(database_url: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "COMETJOBS_ENV": "prod",
        "COMETJOBS_DATABASE_URL": database_url,
        "COMETJOBS_BROKER_URL": os.environ.get("COMETJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "COMETJOBS_BROKER_KEY_PREFIX": prefix,
        "COMETJOBS_COMETAPI_KEY": "bench-not-a-real-key",
        "COMETJOBS_CONSOLE_SECRET": "bench-console-secret-" + uuid.uuid4().hex,
        "COMETJOBS_LOG_FORMAT": "json",
        "COMETJOBS_DATA_DIR": tempfile.mkdtemp(prefix="cometjobs-bench-api-"),
    })
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@dataclass
class _Served:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU the server has used so far, its worker processes included."""
        root = psutil.Process(self.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


@contextmanager
def _server(args: list[str], env: dict[str, str], port: int) -> Iterator[_Served]:
    log = open(Path(env["COMETJOBS_DATA_DIR"]) / f"server-{port}.log", "wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz" if "cometjobs" in args else f"{url}/docs", proc)
        yield _Served(url, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _client(env: dict[str, str]) -> str:
    code = ("import json; from app.core.db import session_scope; from app.clients.service import create\n"
            "with session_scope() as s: print(create(s, 'bench').api_key)")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def _lua(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.lua"
    path.write_text(text)
    return path


def _scripts(tmp: Path, key: str, ids: list[str]) -> dict[str, Path]:
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    body = json.dumps(BODY).replace("\\", "\\\\").replace('"', '\\"')
    id_list = ", ".join(f'"{i}"' for i in ids)
    return {
        "POST /v1/jobs": _lua(tmp, "post", auth + 'wrk.method = "POST"\nwrk.path = "/v1/jobs"\n'
                              'wrk.headers["Content-Type"] = "application/json"\n' + f'wrk.body = "{body}"\n'),
        "GET /v1/jobs/{id}": _lua(tmp, "get", auth + f"ids = {{{id_list}}}\n"
                                  'request = function()\n'
                                  '  return wrk.format("GET", "/v1/jobs/" .. ids[math.random(#ids)])\n'
                                  'end\n'),
        "GET /v1/jobs": _lua(tmp, "list", auth + 'wrk.path = "/v1/jobs?limit=20"\n'),
    }


_SHORT = {"POST /v1/jobs": "post", "GET /v1/jobs/{id}": "get", "GET /v1/jobs": "list"}
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if len(latency) < 2:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rate": rate, "p50": _ms(latency["50"]), "p99": _ms(latency["99"]),
            "non2xx": float(errors.group(1)) if errors else 0.0}


def _analyze(database_url: str) -> None:
    """What autovacuum does in steady state: the POST runs grow `jobs` from nothing to
    thousands of rows in seconds, and a read planned on the empty table's statistics is
    not what production runs."""
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("ANALYZE")


def _measure(server: _Served, scripts: dict[str, Path], seconds: int, connections: int,
             database_url: str) -> dict[str, dict[str, float]]:
    out = {}
    for name, script in scripts.items():
        if name.startswith("GET"):
            _analyze(database_url)
        _wrk(server.url, script, 2, connections)  # warm up: pools filled, code paths hot
        cpu = server.cpu_seconds()
        out[name] = _wrk(server.url, script, seconds, connections)
        out[name]["cpu_ms"] = 1000 * (server.cpu_seconds() - cpu) / max(1.0, out[name]["rate"] * seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="also measure `cometjobs api --workers N`")
    parser.add_argument("--reference", choices=["sync", "async"], default="sync",
                        help="sync: def endpoints on psycopg's pool, as the gateway runs (default); "
                        "async: async def endpoints on psycopg's async pool")
    parser.add_argument("--only", choices=["post", "get", "list"], action="append",
                        help="measure only this endpoint (repeatable); default: all three")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    with scratch_database("cj_bench_api") as database_url:
        env = _env(database_url, f"bench-api-{uuid.uuid4().hex[:6]}:")
        key = _client(env)
        tmp = Path(tempfile.mkdtemp(prefix="cometjobs-bench-wrk-"))
        results: dict[str, dict[str, dict[str, float]]] = {}
        port = free_port()
        with _server([sys.executable, "-m", "cometjobs", "api", "--port", str(port)], env, port) as ours:
            ids = [httpx.post(f"{ours.url}/v1/jobs", json=BODY,
                              headers={"Authorization": f"Bearer {key}"}).json()["id"] for _ in range(200)]
            scripts = _scripts(tmp, key, ids)
            if args.only:
                scripts = {name: path for name, path in scripts.items()
                           if _SHORT[name] in args.only}
            results["cometjobs"] = _measure(ours, scripts, args.seconds, args.connections, database_url)
        ref_port = free_port()
        module = "bench.api_reference_sync" if args.reference == "sync" else "bench.api_reference"
        reference = [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(ref_port),
                     "--no-access-log", "--log-level", "warning"]
        with _server(reference, env, ref_port) as ref:
            results["reference"] = _measure(ref, scripts, args.seconds, args.connections, database_url)
        if args.workers > 1:
            port = free_port()
            command = [sys.executable, "-m", "cometjobs", "api", "--port", str(port), "--workers", str(args.workers)]
            with _server(command, env, port) as ours_n:
                results[f"cometjobs x{args.workers}"] = _measure(ours_n, scripts, args.seconds, args.connections, database_url)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nbench-api: {args.connections} connections, {args.seconds} s per run, wrk on the same machine, "
          f"{args.reference} reference\n")
    header = f"{'endpoint':<20} {'':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'CPU ms/req':>11}"
    print(header)
    print("-" * len(header))
    for endpoint in scripts:
        for who, runs in results.items():
            r = runs[endpoint]
            print(f"{endpoint:<20} {who:<14} {r['rate']:>9.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['non2xx']:>8.0f}"
                  f" {r['cpu_ms']:>11.2f}")
        ratio = results["cometjobs"][endpoint]["rate"] / results["reference"][endpoint]["rate"]
        print(f"{'':<20} {'ratio':<14} {ratio:>9.2f}")
    print()


if __name__ == "__main__":
    main()
