"""Readiness checks of each dependency, with short timeouts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy import text

from app.core.db import get_engine
from app.core.logging import redact
from app.core.settings import get_settings
from app.storage.backends import get_storage

CHECK_TIMEOUT = 3.0
_pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="readyz")


def check_database() -> None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def check_broker() -> None:
    url = get_settings().broker_url
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return
    from kombu.connection import Connection

    with Connection(url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


def check_storage() -> None:
    get_storage().check()


CHECKS = {"database": check_database, "broker": check_broker, "storage": check_storage}


def run_checks() -> dict[str, str]:
    """Each dependency's state: "ok" or a short reason. Checks run in parallel."""
    futures = {name: _pool.submit(fn) for name, fn in CHECKS.items()}
    out = {}
    for name, future in futures.items():
        try:
            future.result(timeout=CHECK_TIMEOUT)
            out[name] = "ok"
        except FutureTimeout:
            out[name] = f"timed out after {CHECK_TIMEOUT:g}s"
        except Exception as exc:
            out[name] = redact(f"{type(exc).__name__}: {exc}")[:200]
    return out
