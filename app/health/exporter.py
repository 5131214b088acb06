"""The Celery worker's Prometheus exporter, in prometheus_client's multiprocess mode.

Each prefork child writes its metrics to its own files in
`PROMETHEUS_MULTIPROC_DIR`; an HTTP server in the worker's main process sums
them at every scrape. So one port per worker (not per child) serves the whole
pool, and counters survive a child being replaced (`--max-tasks-per-child`, a
crash). The directory belongs to one worker and is emptied when it starts
(Celery's first worker signal, `celeryd_init`, before anything records a value).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
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


class PoolProcessCollector:
    """CPU, memory and file descriptors of each prefork child, labelled by its pool index
    (0..concurrency-1, reused when a child is replaced: a bounded label, unlike a pid).
    Read from /proc at scrape time, as prometheus_client's ProcessCollector does for the
    main process."""

    _SERIES = {
        "process_resident_memory_bytes": ("cometjobs_worker_child_resident_memory_bytes", "gauge"),
        "process_cpu_seconds_total": ("cometjobs_worker_child_cpu_seconds_total", "counter"),
        "process_open_fds": ("cometjobs_worker_child_open_fds", "gauge"),
        "process_start_time_seconds": ("cometjobs_worker_child_start_time_seconds", "gauge"),
    }

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def children(self) -> list[tuple[str, int]]:
        # celery's TaskPool -> billiard's pool -> its process objects; absent with a solo
        # or thread pool, and between a child's exit and its replacement.
        pool = getattr(getattr(self.worker, "pool", None), "_pool", None)
        processes = list(getattr(pool, "_pool", None) or [])
        return sorted((str(getattr(p, "index", "?")), p.pid) for p in processes if getattr(p, "pid", None))

    def collect(self) -> Iterator[Any]:
        from prometheus_client import ProcessCollector
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families = {
            name: (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, f"Prefork pool child: {name.removeprefix('cometjobs_worker_child_')}", labels=["index"])
            for name, kind in self._SERIES.values()
        }
        for index, pid in self.children():
            for family in ProcessCollector(pid=functools.partial(int, pid), registry=None).collect():
                for sample in family.samples:
                    target = self._SERIES.get(sample.name)
                    if target is not None:
                        families[target[0]].add_metric([index], sample.value)
        yield from families.values()


def start_worker_exporter(port: int, host: str, worker: Any = None) -> Any:
    """Serve the worker pool's metrics on host:port; returns the server, or None when disabled.
    Besides the children's files: the main process's own `process_*` series and each
    child's (`cometjobs_worker_child_*`), read from /proc."""
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
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    ProcessCollector(registry=registry)
    if worker is not None:
        registry.register(PoolProcessCollector(worker))
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
