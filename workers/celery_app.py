"""The Celery application. Tasks live in `workers.tasks`; the work in `app/`."""

from __future__ import annotations

from celery import Celery, signals

from app.core import queue
from app.core.settings import get_settings
from workers.config import celery_config
from workers.patches import tolerate_restore_after_disconnect

tolerate_restore_after_disconnect()

app = Celery("cometjobs")
app.conf.update(celery_config(get_settings()))
app.conf.include = ["workers.tasks"]
# Tasks that nudge other work publish through this app's own connection pool.
queue.install(queue.CeleryPublisher(app))


@signals.setup_logging.connect
def _setup_logging(**_kwargs: object) -> None:
    from app.core.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)


@signals.worker_init.connect
def _warm_up(**_kwargs: object) -> None:
    """Load the model catalogue and its adapters before the pool forks, so no child pays
    for it on its first task (a queued job's first nudge). The tasks module, and with it
    the whole pipeline, is imported by then (`include`)."""
    from app.core.settings import get_settings
    from app.providers.registry import all_adapters

    get_settings().require("cometapi_key")  # also when started as `celery -A workers worker`
    all_adapters()


@signals.worker_process_init.connect
def _after_fork(**_kwargs: object) -> None:
    # Pooled connections must never be shared across a fork.
    from app.core.db import reset_engine
    from app.providers.http import reset_clients

    reset_engine()
    reset_clients()


@signals.worker_process_shutdown.connect
def _before_exit(**_kwargs: object) -> None:
    from app.core import aio

    aio.shutdown()


# Prometheus: the exporter runs in the main process and sums the children's
# multiprocess files (see app/health/exporter.py); task metrics come from signals.
@signals.celeryd_init.connect
def _empty_metrics_dir(**_kwargs: object) -> None:
    # The first worker signal: before any worker_init handler imports (and writes) metrics.
    from app.health.exporter import reset_multiprocess_dir

    reset_multiprocess_dir()


@signals.worker_init.connect
def _start_metrics_exporter(sender: object = None, **_kwargs: object) -> None:
    from app.core.metrics import record_build_info
    from app.health.exporter import start_worker_exporter

    record_build_info()  # the directory was emptied (celeryd_init) after the import had set it
    settings = get_settings()
    # The sender is the worker: its pool lists the children whose process metrics are served.
    start_worker_exporter(settings.worker_metrics_port, settings.worker_metrics_host, worker=sender)


@signals.worker_process_init.connect
def _metrics_after_fork(**_kwargs: object) -> None:
    from app.core.metrics import record_build_info
    from app.health.exporter import after_fork

    after_fork()
    record_build_info()


@signals.worker_process_shutdown.connect
def _metrics_before_exit(pid: int | None = None, **_kwargs: object) -> None:
    import os

    from app.health.exporter import child_exited

    child_exited(pid or os.getpid())


_task_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started_at(task_id: str | None = None, **_kwargs: object) -> None:
    import time

    if task_id:
        _task_started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_finished(
    task_id: str | None = None, task: object = None, state: str | None = None, **_kwargs: object
) -> None:
    import time

    import structlog

    from app.core import metrics

    # Celery has logged the task's outcome by now; the next task must not inherit its fields.
    structlog.contextvars.clear_contextvars()
    name = getattr(task, "name", None) or "unknown"
    started = _task_started.pop(task_id or "", None)
    metrics.TASKS.labels(task=name, state=(state or "UNKNOWN").lower()).inc()
    if started is not None:
        metrics.TASK_SECONDS.labels(task=name).observe(time.perf_counter() - started)
