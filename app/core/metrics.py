"""Prometheus metrics. Labels stay small: model, family, state, outcome,
route, queue — never a job id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STATE_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

HTTP_REQUESTS = Counter(
    "cometjobs_http_requests_total", "API requests by route, method and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "cometjobs_http_request_duration_seconds", "API request latency", ["route", "method"], buckets=LATENCY_BUCKETS
)
JOBS_CREATED = Counter("cometjobs_jobs_created_total", "Jobs accepted", ["model"])
JOBS_FINISHED = Counter("cometjobs_jobs_finished_total", "Jobs that reached a terminal state", ["model", "status"])
STATE_SECONDS = Histogram(
    "cometjobs_job_state_duration_seconds", "Time a job spent in a state before leaving it",
    ["state", "kind"], buckets=STATE_BUCKETS,
)
UPSTREAM_CALLS = Counter(
    "cometjobs_upstream_requests_total", "CometAPI calls by family, endpoint and outcome",
    ["family", "endpoint", "outcome"],
)
UPSTREAM_LATENCY = Histogram(
    "cometjobs_upstream_request_duration_seconds", "CometAPI call latency", ["family", "endpoint"],
    buckets=LATENCY_BUCKETS,
)
POLL_LAG = Histogram(
    "cometjobs_poll_lag_seconds", "Delay between a poll falling due and it being sent",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
STORAGE_BYTES = Counter("cometjobs_storage_bytes_copied_total", "Bytes copied into storage", ["backend"])
STORAGE_COPY_SECONDS = Histogram(
    "cometjobs_storage_copy_duration_seconds", "Duration of one artifact copy", ["backend"],
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
WEBHOOK_ATTEMPTS = Counter("cometjobs_webhook_attempts_total", "Webhook attempts by outcome", ["outcome"])
WEBHOOK_LATENCY = Histogram(
    "cometjobs_webhook_attempt_duration_seconds", "Webhook attempt latency", buckets=LATENCY_BUCKETS
)


def job_transition(job: Any, new_status: str, now: datetime, previous: tuple[str, datetime] | None = None) -> None:
    if previous is not None:
        old_status, entered = previous
        STATE_SECONDS.labels(state=old_status, kind=job.kind).observe(max(0.0, (now - entered).total_seconds()))
    if new_status in ("succeeded", "failed", "canceled", "timed_out"):
        JOBS_FINISHED.labels(model=job.model, status=new_status).inc()


def upstream_call(family: str, endpoint: str, outcome: str, seconds: float) -> None:
    UPSTREAM_CALLS.labels(family=family, endpoint=endpoint, outcome=outcome).inc()
    UPSTREAM_LATENCY.labels(family=family, endpoint=endpoint).observe(seconds)
