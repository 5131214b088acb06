"""`make bench-copy`: copy one large result from the emulator into each storage backend.

For each backend a fresh process runs the worker's own collect step (claim, stream,
hash, store, record) against an embedded SQLite database, while a thread samples
its RSS. In the same run, a plain streaming httpx download of the same URL to disk
gives the ceiling, and the backend alone (the same writer fed from memory) shows
what the backend can absorb. Everything runs on loopback: the emulator, moto (the
S3 server) and the copying process share this machine's CPUs.

Each size is measured unthrottled (CPU-bound: the emulator, the copy and moto
compete for the same cores) and with the emulator serving at a fixed rate, as a
remote upstream would.

    python -m bench.copy [--size-mib 1024] [--backends local,s3] [--rates 0,100] [--part-mib 8]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port, wait_http

MIB = 1024 * 1024
EMULATOR_KEY = "bench-copy-key"
BUCKET = "bench-copy"


class RssSampler:
    """Peak resident set size of this process, sampled every 5 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.current())

    def __enter__(self) -> RssSampler:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def child(video_id: str) -> None:
    """The copy, in a fresh process whose environment names the backend."""
    from app.artifacts.models import Artifact
    from app.clients.service import create as create_client
    from app.core.db import session_scope, utcnow
    from app.core.ids import new_id
    from app.jobs.collector import collect
    from app.jobs.models import Job
    from app.providers.http import sync_client
    from app.providers.registry import adapter_for, get_model
    from app.storage.backends import get_storage

    now = utcnow()
    job_id = new_id("job")
    with session_scope() as session:
        client = create_client(session, f"bench-{job_id}").client
        session.add(Job(
            id=job_id, client_id=client.id, model="sora-2", family="sora", kind="video", input={}, meta={},
            webhook_events=[], storage_prefix=f"{client.id}/{job_id}/{secrets.token_urlsafe(12)}",
            status="collecting", progress=100, upstream_id=video_id, upstream_status="completed",
            upstream_payload={"id": video_id, "object": "video", "status": "completed", "progress": 100},
            due_at=now, created_at=now, updated_at=now, status_changed_at=now, progress_at=now,
        ))
    # What every worker process holds after its first task (clients, adapters), so the
    # growth measured is the copy's own.
    get_storage().check()
    sync_client()
    adapter_for(get_model("sora-2"))
    with RssSampler() as rss:
        base = rss.current()
        started = time.perf_counter()
        outcome = collect(job_id)
        elapsed = time.perf_counter() - started
    with session_scope() as session:
        artifact = session.query(Artifact).filter_by(job_id=job_id, name="video").one_or_none()
        stored = {"key": artifact.storage_key, "size": artifact.size_bytes} if artifact else None
    if artifact is not None:
        get_storage().delete(artifact.storage_key)
    print(json.dumps({"outcome": outcome, "seconds": elapsed, "rss_base": base, "rss_peak": rss.peak,
                      "stored": stored}))


def sink(size: int) -> None:
    """The backend alone: the same writer fed from memory, no download."""
    from app.storage.backends import get_storage
    from app.storage.copy import copy_stream

    storage = get_storage()
    storage.check()
    block = os.urandom(MIB)
    key = f"bench/sink-{secrets.token_hex(8)}.bin"
    started = time.perf_counter()
    copy_stream(storage, key, (block for _ in range(size // MIB)), "application/octet-stream")
    elapsed = time.perf_counter() - started
    storage.delete(key)
    print(json.dumps({"seconds": elapsed}))


def ceiling(url: str, target: Path) -> tuple[float, int]:
    """A plain streaming download to a file: no hashing, no fsync, nothing else."""
    size = 0
    with httpx.Client(timeout=60) as http:
        started = time.perf_counter()
        with http.stream("GET", url, headers={"Authorization": f"Bearer {EMULATOR_KEY}"}) as response:
            response.raise_for_status()
            with target.open("wb") as out:
                for piece in response.iter_bytes():
                    out.write(piece)
                    size += len(piece)
        elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed, size


def _run_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size = args.size_mib * MIB
        self.root = Path(tempfile.mkdtemp(prefix="cometjobs-bench-copy-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.emulator = f"http://127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "COMETJOBS_ENV": "test",
            "COMETJOBS_DATA_DIR": str(self.root / "data"),
            "COMETJOBS_DATABASE_URL": f"sqlite:///{self.root / 'bench.db'}",
            "COMETJOBS_BROKER_URL": f"sqla+sqlite:///{self.root / 'broker.db'}",
            "COMETJOBS_COMETAPI_BASE_URL": self.emulator,
            "COMETJOBS_COMETAPI_KEY": EMULATOR_KEY,
            "COMETJOBS_LOG_LEVEL": "WARNING",
            "COMETJOBS_LOG_FORMAT": "json",
        }
        (self.root / "data").mkdir()
        self.backends: dict[str, dict[str, str]] = {}

    def spawn(self, *cmd: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"proc-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(list(cmd), env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        port = self.emulator.rsplit(":", 1)[1]
        proc = self.spawn(sys.executable, "-m", "cometjobs", "emulator", "--port", port, "--api-key", EMULATOR_KEY,
                          "--job-seconds", "0", "--content-bytes", str(self.size))
        wait_http(f"{self.emulator}/_emulator/health", proc)
        subprocess.run([sys.executable, "-m", "cometjobs", "migrate"], env=self.env, check=True, capture_output=True)
        for name in self.args.backends.split(","):
            if name == "local":
                self.backends["local"] = {"COMETJOBS_STORAGE_URL": (self.root / "artifacts").as_uri()}
            elif name == "s3":
                self.backends["s3"] = self._start_moto()
            else:
                raise SystemExit(f"unknown backend {name!r}; use local and/or s3")

    def _start_moto(self) -> dict[str, str]:
        import boto3

        endpoint = f"http://127.0.0.1:{free_port()}"
        proc = self.spawn(sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1])
        wait_http(f"{endpoint}/moto-api/", proc)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket=BUCKET)
        return {
            "COMETJOBS_STORAGE_URL": f"s3://{BUCKET}/artifacts",
            "COMETJOBS_S3_ENDPOINT_URL": endpoint,
            "COMETJOBS_S3_ADDRESSING_STYLE": "path",
            "COMETJOBS_S3_PART_BYTES": str(self.args.part_mib * MIB),
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
        }

    def measure(self, backend: str, rate_mib: float) -> dict[str, Any]:
        httpx.post(f"{self.emulator}/_emulator/config",
                   json={"variants": ["video"], "download_rate": rate_mib * MIB}).raise_for_status()
        video = httpx.post(
            f"{self.emulator}/v1/videos", headers={"Authorization": f"Bearer {EMULATOR_KEY}"},
            files={"model": (None, "sora-2"), "prompt": (None, f"bench {backend}")},
        ).json()["id"]
        ceiling_s, got = ceiling(f"{self.emulator}/v1/videos/{video}/content", self.root / "ceiling.bin")
        if got != self.size:
            raise SystemExit(f"the ceiling download got {got} of {self.size} bytes")
        env = {**self.env, **self.backends[backend]}
        copy = _run_json([sys.executable, "-m", "bench.copy", "--child", video], env)
        if copy["outcome"] != "succeeded" or not copy["stored"] or copy["stored"]["size"] != self.size:
            raise SystemExit(f"{backend}: the copy did not succeed: {copy}")
        alone = _run_json([sys.executable, "-m", "bench.copy", "--sink", "--size-mib", str(self.args.size_mib)], env)
        return {"backend": backend, "ceiling_s": ceiling_s, "sink_s": alone["seconds"], **copy}

    def report(self, rate_mib: float, rows: list[dict[str, Any]]) -> None:
        mib = self.args.size_mib
        served = "unthrottled" if not rate_mib else f"served at {rate_mib:g} MiB/s"
        print(f"\n{mib} MiB result, emulator {served}")
        print(f"  {'backend':8} {'ceiling':>9} {'copy':>9} {'of ceiling':>11} {'RSS growth':>11} {'backend alone':>14}")
        for r in rows:
            top, rate, alone = mib / r["ceiling_s"], mib / r["seconds"], mib / r["sink_s"]
            growth = (r["rss_peak"] - r["rss_base"]) / MIB
            print(f"  {r['backend']:8} {top:5.0f} MiB/s {rate:5.0f} MiB/s {rate / top:10.0%} {growth:7.1f} MiB"
                  f" {alone:8.0f} MiB/s")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
        shutil.rmtree(self.root, ignore_errors=True)


NOTES = """
ceiling        a plain httpx streaming download of the same URL to a file (no hash, no fsync),
               measured just before each copy
copy           the worker's collect step end to end, in its own process: claim, stream, sha256,
               store (local: fsync + rename; S3: multipart upload), rows recorded
RSS growth     peak RSS of the copying process minus its RSS just before the copy
backend alone  the same storage writer fed the same bytes from memory, no download: what the
               backend absorbs on this machine (the S3 copy cannot beat it)"""

MOTO_NOTE = """s3             moto's standalone server on loopback, {part} MiB parts. moto is one Python process
               on this machine: it keeps every part in memory, joins all parts into one buffer
               when the upload completes (seconds per GiB, after the last byte is sent), and over
               plain HTTP botocore also SHA-256-signs each part (not over HTTPS). The S3 figure is
               bound by moto, not by the copy: a floor, not a forecast for AWS S3, MinIO or R2."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--rates", default="0,100", help="emulator MiB/s per round (0: unthrottled)")
    parser.add_argument("--part-mib", type=int, default=8, help="S3 multipart part size")
    parser.add_argument("--child", metavar="VIDEO_ID", help=argparse.SUPPRESS)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.sink:
        sink(args.size_mib * MIB)
        return

    bench = Bench(args)
    try:
        bench.start()
        print(f"bench-copy: {args.size_mib} MiB from the emulator into {', '.join(bench.backends)}"
              f" ({os.cpu_count()} CPUs, everything on loopback)")
        for rate in (float(r) for r in args.rates.split(",")):
            bench.report(rate, [bench.measure(name, rate) for name in bench.backends])
        print(NOTES)
        if "s3" in bench.backends:
            print(MOTO_NOTE.format(part=args.part_mib))
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
