"""The Celery worker's Prometheus exporter, in prometheus_client's multiprocess mode.

Each prefork child writes its metrics to its own files in
`PROMETHEUS_MULTIPROC_DIR`; an HTTP server in the worker's main process sums
them at every scrape. So one port per worker (not per child) serves the whole
pool, and counters survive a child being replaced (`--max-tasks-per-child`, a
crash). The directory belongs to one worker and is emptied when it starts
(Celery's first worker signal, `celeryd_init`, before anything records a value).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)
_server: Any = None


def multiprocess_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def own_worker_dir(data_dir: Path) -> Path:
    """`DATA_DIR/metrics/worker-<pid>` for this worker; directories of workers gone are removed."""
    root = data_dir.resolve() / "metrics"
    for other in root.glob("worker-*"):
        pid = other.name.removeprefix("worker-")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(other, ignore_errors=True)
    return root / f"worker-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reset_multiprocess_dir() -> Path | None:
    """Empty the directory before any process of this worker (or API) writes to it."""
    path = multiprocess_dir()
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def start_worker_exporter(port: int, host: str) -> Any:
    """Serve the worker pool's metrics on host:port; returns the server, or None when disabled."""
    global _server
    if port <= 0:
        return None
    if multiprocess_dir() is None:
        log.error(
            "worker_metrics_disabled",
            reason="COMETJOBS_WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not; "
            "prefork children could not share their metrics",
        )
        return None
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    try:
        _server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("worker_metrics_disabled", reason=f"cannot listen on {host}:{port}: {exc}")
        return None
    log.info("worker_metrics_listening", host=host, port=port, directory=str(multiprocess_dir()))
    return _server


def after_fork() -> None:
    """A pool child must not hold the exporter's listening socket open."""
    if _server is not None:
        _server.socket.close()


def child_exited(pid: int) -> None:
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
