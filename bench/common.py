"""Pieces every benchmark needs: free ports, an emulator process, a scratch database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg

PG = {"host": os.environ.get("COMETJOBS_TEST_PG_HOST", "127.0.0.1"),
      "port": os.environ.get("COMETJOBS_TEST_PG_PORT", "5432"),
      "user": os.environ.get("COMETJOBS_TEST_PG_USER", "postgres")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited early")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout:g}s")


@contextmanager
def emulator(*args: str, api_key: str = "bench-key") -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cometjobs", "emulator", "--port", str(port), "--api-key", api_key, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_emulator/health", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A fresh, migrated Postgres database, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    try:
        from app.core.migrate import upgrade

        upgrade(url)
        yield url
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
