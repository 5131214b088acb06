"""Prometheus metrics, named per the Prometheus conventions (base units, `_total`
for counters). Labels stay small and bounded: model, family, state, status,
outcome, route, queue, task — never a job id.

Gauges that describe the whole system (jobs per state, webhook backlog, queue
depth) are not here: `app.health.metrics` reads them at scrape time.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.orm import Session

from app.core.db import on_commit

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Multiprocess mode writes a file per process from the first value on: the directory must exist.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Upstream calls, content copies and tasks can last minutes (a Sora create that hangs, a
# large video streamed into S3): buckets reach 30 minutes, or their quantiles would pin at 30 s.
LONG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800)
STATE_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

HTTP_REQUESTS = Counter(
    "cometjobs_http_requests_total", "API requests by route template, method and status code",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "cometjobs_http_request_duration_seconds", "API request latency", ["route", "method"], buckets=LATENCY_BUCKETS
)
# Each (route template, method, status) names its two series once; labels() per request
# (validation, a lock, a lookup) was 2% of a POST's CPU. Bounded: route templates, the
# methods the HTTP parser knows, status codes.
_request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def request_served(route: str, method: str, status: int, seconds: float) -> None:
    series = _request_series.get((route, method, status))
    if series is None:
        series = _request_series[(route, method, status)] = (
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)),
            HTTP_LATENCY.labels(route=route, method=method),
        )
    series[0].inc()
    series[1].observe(seconds)


JOBS_CREATED = Counter("cometjobs_jobs_created_total", "Jobs accepted", ["model"])
# error_source: where a failure came from (validation, upstream, storage, timeout, canceled),
# "none" for a success. A bounded set, unlike the upstream's own error codes.
JOBS_FINISHED = Counter(
    "cometjobs_jobs_finished_total", "Jobs that reached a terminal status, by model, status and error source",
    ["model", "status", "error_source"],
)
JOB_SECONDS = Histogram(
    "cometjobs_job_duration_seconds", "Time from acceptance to a terminal status", ["model", "status"],
    buckets=STATE_BUCKETS,
)
STATE_SECONDS = Histogram(
    "cometjobs_job_state_duration_seconds", "Time a job spent in a state before leaving it",
    ["model", "state"], buckets=STATE_BUCKETS,
)
UPSTREAM_CALLS = Counter(
    "cometjobs_upstream_requests_total",
    "CometAPI calls by family, endpoint and outcome (ok, skipped: an optional result the upstream does not "
    "have, or an error code)",
    ["family", "endpoint", "outcome"],
)
UPSTREAM_LATENCY = Histogram(
    "cometjobs_upstream_request_duration_seconds", "CometAPI call latency (content: the whole streamed copy)",
    ["family", "endpoint"], buckets=LONG_BUCKETS,
)
POLL_LAG = Histogram(
    "cometjobs_poll_lag_seconds", "Delay between a poll falling due and a worker claiming it",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
STORAGE_BYTES = Counter(
    "cometjobs_storage_copied_bytes_total", "Bytes of results copied into storage", ["backend"]
)
STORAGE_COPY_SECONDS = Histogram(
    "cometjobs_storage_copy_duration_seconds", "Duration of one artifact copy, upstream to storage", ["backend"],
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800),
)
STORAGE_ERRORS = Counter(
    "cometjobs_storage_errors_total",
    "Storage operations that failed on the storage side (a full disk, S3 refusing a write), by operation",
    ["backend", "operation"],
)
RETENTION_DELETED = Counter(
    "cometjobs_retention_deleted_total",
    "Rows deleted by retention: finished jobs (with their children), uploads, daily spend rows", ["kind"],
)
WEBHOOK_ATTEMPTS = Counter(
    "cometjobs_webhook_attempts_total",
    "Webhook attempts by outcome: success, http_4xx, http_5xx, redirect, timeout, network_error, refused",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "cometjobs_webhook_attempt_duration_seconds", "Webhook attempt latency", buckets=LATENCY_BUCKETS
)
WEBHOOK_SETTLED = Counter(
    "cometjobs_webhook_deliveries_settled_total",
    "Webhook deliveries that stopped being attempted: delivered, dead (every retry failed) or disabled (410)",
    ["outcome"],
)
TASKS = Counter(
    "cometjobs_celery_tasks_total", "Celery tasks run by a worker, by task name and final state", ["task", "state"]
)
TASK_SECONDS = Histogram(
    "cometjobs_celery_task_duration_seconds", "Celery task run time", ["task"], buckets=LONG_BUCKETS
)

UPSTREAM_IN_FLIGHT = Gauge(
    "cometjobs_upstream_in_flight", "Upstream tasks holding a slot, by model (the dispatcher's count)", ["model"],
    multiprocess_mode="livemax",
)
UPSTREAM_CAP = Gauge(
    "cometjobs_upstream_cap", "A model's effective cap on tasks in flight (-1: none)", ["model"],
    multiprocess_mode="livemax",
)
UPSTREAM_THROTTLED = Counter(
    "cometjobs_upstream_throttled_total", "Create calls the upstream answered 429 (the model's concurrency halves)",
    ["model"],
)
QUEUE_WAIT = Histogram(
    "cometjobs_queue_wait_seconds", "Time from acceptance to the upstream create call, by client", ["client"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
QUEUED_JOBS = Gauge(
    "cometjobs_queued_jobs", "Jobs waiting for an upstream slot, by client", ["client"], multiprocess_mode="livemax",
)
TICK_RUNS = Counter(
    "cometjobs_tick_runs_total", "Scheduler tick rounds by tick and outcome (ok, error)", ["tick", "outcome"]
)
TICK_SECONDS = Histogram(
    "cometjobs_tick_duration_seconds", "Duration of one scheduler tick round", ["tick"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TICK_LAST_SUCCESS = Gauge(
    "cometjobs_tick_last_success_timestamp_seconds", "When each scheduler tick last completed a round (heartbeat)",
    ["tick"], multiprocess_mode="max",
)
SCHEDULER_LEADER = Gauge(
    "cometjobs_scheduler_leader", "1 while this scheduler replica holds the leadership lock",
    multiprocess_mode="liveall",
)
BUILD_INFO = Gauge(
    "cometjobs_build_info", "Always 1: the cometjobs version and Python version of this process",
    ["version", "python"], multiprocess_mode="max",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cometjobs")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def record_build_info() -> None:
    """Set at import; again in each prefork child and after a worker empties its
    multiprocess directory, since in multiprocess mode a value lives in its process's file."""
    BUILD_INFO.labels(version=_version(), python=platform.python_version()).set(1)


record_build_info()


def tick_ran(tick: str, seconds: float, *, ok: bool) -> None:
    TICK_RUNS.labels(tick=tick, outcome="ok" if ok else "error").inc()
    TICK_SECONDS.labels(tick=tick).observe(seconds)
    if ok:
        TICK_LAST_SUCCESS.labels(tick=tick).set_to_current_time()


def after_commit(session: Session | None, record: Callable[[], None]) -> None:
    """Record once the transaction commits, so a rolled-back move is never counted."""
    if session is None:
        record()
    else:
        on_commit(session, record)


def _seconds(later: datetime, earlier: datetime | None) -> float | None:
    if earlier is None:
        return None
    if (later.tzinfo is None) != (earlier.tzinfo is None):
        later, earlier = later.replace(tzinfo=None), earlier.replace(tzinfo=None)
    return max(0.0, (later - earlier).total_seconds())


def job_transition(
    job: Any, new_status: str, now: datetime, previous: tuple[str, datetime] | None = None,
    *, terminal: bool, session: Session | None = None,
) -> None:
    model = job.model
    spent = _seconds(now, previous[1]) if previous is not None else None
    old_status = previous[0] if previous is not None else None
    total = _seconds(now, getattr(job, "created_at", None)) if terminal else None

    # `fail` writes error_source with the move; a success has none.
    source = (getattr(job, "error_source", None) or "none") if terminal else "none"

    def record() -> None:
        if old_status is not None and spent is not None:
            STATE_SECONDS.labels(model=model, state=old_status).observe(spent)
        if terminal:
            JOBS_FINISHED.labels(model=model, status=new_status, error_source=source).inc()
            if total is not None:
                JOB_SECONDS.labels(model=model, status=new_status).observe(total)

    after_commit(session, record)


def job_created(model: str, session: Session | None = None) -> None:
    after_commit(session, JOBS_CREATED.labels(model=model).inc)


def upstream_call(family: str, endpoint: str, outcome: str, seconds: float) -> None:
    UPSTREAM_CALLS.labels(family=family, endpoint=endpoint, outcome=outcome).inc()
    UPSTREAM_LATENCY.labels(family=family, endpoint=endpoint).observe(seconds)


def webhook_settled(session: Session | None, outcomes: Iterable[str]) -> None:
    """Deliveries that stopped being attempted, counted once their batch commits."""
    settled: dict[str, int] = {}
    for outcome in outcomes:
        if outcome in ("delivered", "dead", "failed", "disabled"):
            settled[outcome] = settled.get(outcome, 0) + 1

    def record() -> None:
        for outcome, n in settled.items():
            WEBHOOK_SETTLED.labels(outcome=outcome).inc(n)

    if settled:
        after_commit(session, record)


def webhook_outcome(status_code: int | None, error: str | None) -> str:
    if status_code is None:
        text = error or ""
        if text.startswith("refused"):
            return "refused"
        return "timeout" if "Timeout" in text.split(":", 1)[0] else "network_error"
    if 200 <= status_code < 300:
        return "success"
    if 300 <= status_code < 400:
        return "redirect"
    return "http_4xx" if status_code < 500 else "http_5xx"


def webhook_attempts(attempts: Iterable[tuple[int | None, str | None, int]]) -> None:
    """A batch of attempts: one counter increment per outcome, not per attempt."""
    outcomes: dict[str, int] = {}
    for status_code, error, latency_ms in attempts:
        outcome = webhook_outcome(status_code, error)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        WEBHOOK_LATENCY.observe(max(0, latency_ms) / 1000)
    for outcome, n in outcomes.items():
        WEBHOOK_ATTEMPTS.labels(outcome=outcome).inc(n)


__all__ = [
    "after_commit", "job_created", "job_transition", "upstream_call", "webhook_attempts", "webhook_outcome",
    "webhook_settled",
]
