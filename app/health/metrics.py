"""`GET /metrics`: this process's metrics (or every process's, in multiprocess
mode) plus gauges read at scrape time from Postgres (jobs per state, webhook
backlog) and from the broker (queue depth)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Select, exists, func, literal_column, select, text
from sqlalchemy.orm import aliased

from app.core.boundary import CheckedRoute
from app.core.db import get_sessionmaker
from app.core.settings import get_settings
from app.core.tasks import QueueName
from app.jobs.models import LIVE_SQL
from app.jobs.states import ACTIVE

LIVE = text(LIVE_SQL)  # the predicate of `ix_jobs_live`, verbatim, so the planner uses it

router = APIRouter(tags=["health"], route_class=CheckedRoute)
# A scrape must answer quickly even when the database is slow.
SCRAPE_STATEMENT_TIMEOUT_MS = 2000


def _up(name: str, ok: bool) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        f"cometjobs_{name}_scrape_success", f"1 when the {name} gauges were read at this scrape, else 0"
    )
    gauge.add_metric([], 1.0 if ok else 0.0)
    return gauge


def _age(now: datetime, since: datetime | None) -> float:
    if since is None:
        return 0.0
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return max(0.0, (now - since).total_seconds())


def _most_overdue_delivery(now: datetime) -> Select[Any]:
    """When the longest-waiting attempt fell due. A receiver that keeps failing has its next
    attempt scheduled in the future (and one in flight is leased into the future), so it
    cannot hold this up; a job's later events, which wait for its first one, are left out.
    Only the schedulers and workers falling behind can."""
    from app.webhooks.models import WebhookDelivery

    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.job_id == WebhookDelivery.job_id, earlier.seq < WebhookDelivery.seq, earlier.status == "pending",
    )
    return select(func.min(WebhookDelivery.next_attempt_at)).where(
        WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now, ~blocked,
    )


@dataclass(frozen=True)
class _DatabaseReading:
    per_state: Mapping[str, tuple[int, datetime | None]]
    pending: int
    first_pending: datetime | None
    most_overdue: datetime | None


class DatabaseCollector(Collector):
    """Three aggregate queries, served by partial indexes of live rows only (`ix_jobs_live`,
    `ix_webhook_deliveries_pending`), so their cost follows the backlog, not the history.
    A reading is reused for COMETJOBS_METRICS_DB_CACHE; ages are computed at each scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading: tuple[float, _DatabaseReading] | None = None

    def _read(self, now: datetime) -> _DatabaseReading:
        from app.jobs.models import Job
        from app.webhooks.models import WebhookDelivery

        with get_sessionmaker()() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}"))
            per_state = {
                status: (count, since) for status, count, since in session.execute(
                    select(Job.status, func.count(), func.min(Job.status_changed_at))
                    .where(LIVE)
                    .group_by(Job.status)
                ).all()
            }
            pending, first = session.execute(
                select(func.count(), func.min(WebhookDelivery.created_at))
                .where(WebhookDelivery.status == literal_column("'pending'"))  # a literal: the partial index's
            ).one()
            return _DatabaseReading(per_state, pending or 0, first, session.scalar(_most_overdue_delivery(now)))

    def reading(self, now: datetime) -> _DatabaseReading:
        ttl = get_settings().metrics_db_cache.total_seconds()
        with self._lock:  # concurrent scrapes wait for one reading instead of each making one
            if self._reading is not None and time.monotonic() < self._reading[0]:
                return self._reading[1]
            fresh = self._read(now)
            self._reading = (time.monotonic() + ttl, fresh) if ttl > 0 else None
            return fresh

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        try:
            reading = self.reading(now)
        except Exception:
            yield _up("database", False)
            return
        per_state, pending, first, most_overdue = (
            reading.per_state, reading.pending, reading.first_pending, reading.most_overdue)
        jobs = GaugeMetricFamily("cometjobs_jobs", "Jobs currently in each non-terminal state", labels=["state"])
        oldest_job = GaugeMetricFamily(
            "cometjobs_jobs_oldest_age_seconds",
            "Time the oldest job in each non-terminal state has been in it (0: none)", labels=["state"],
        )
        for state in sorted(s.value for s in ACTIVE):
            count, since = per_state.get(state, (0, None))
            jobs.add_metric([state], count)
            oldest_job.add_metric([state], _age(now, since))
        yield jobs
        yield oldest_job
        backlog = GaugeMetricFamily(
            "cometjobs_webhook_pending_deliveries", "Webhook deliveries not yet delivered, dead or canceled"
        )
        backlog.add_metric([], pending or 0)
        yield backlog
        oldest = GaugeMetricFamily(
            "cometjobs_webhook_oldest_pending_age_seconds",
            "Age of the oldest undelivered webhook event, retries of failing receivers included (0: none)",
        )
        oldest.add_metric([], _age(now, first))
        yield oldest
        overdue = GaugeMetricFamily(
            "cometjobs_webhook_oldest_due_age_seconds",
            "How long the most overdue webhook attempt has been due (0: none): our sending lag, whatever "
            "the receivers answer",
        )
        overdue.add_metric([], _age(now, most_overdue))
        yield overdue
        yield _up("database", True)


class StorageCollector(Collector):
    """Free and total bytes of the file system under local-disk storage (S3 has no such limit)."""

    def collect(self) -> Iterator[Metric]:
        import shutil

        from app.storage.backends import LocalStorage, get_storage

        try:
            storage = get_storage()
            if not isinstance(storage, LocalStorage):
                return
            # The root appears with the first object; until then, the file system it will be on.
            path = storage.root
            while not path.exists() and path != path.parent:
                path = path.parent
            usage = shutil.disk_usage(path)
        except Exception:
            return
        free = GaugeMetricFamily("cometjobs_storage_disk_free_bytes",
                                 "Bytes free to us on the local storage's file system")
        free.add_metric([], usage.free)
        size = GaugeMetricFamily("cometjobs_storage_disk_size_bytes", "Size of the local storage's file system")
        size.add_metric([], usage.total)
        yield free
        yield size


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue (Redis broker: one pipelined LLEN per queue);
    None when the broker is not Redis or cannot be read."""
    settings = get_settings()
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=1, socket_timeout=1)
        try:
            with client.pipeline(transaction=False) as pipe:
                for queue in QueueName:
                    pipe.llen(f"{settings.broker_key_prefix}{queue.value}")
                lengths = pipe.execute()
        finally:
            client.close()
    except Exception:
        return None
    return {queue.value: int(length) for queue, length in zip(QueueName, lengths, strict=True)}


class QueueCollector(Collector):
    """Messages waiting in each Celery queue (Redis broker only)."""

    def collect(self) -> Iterator[Metric]:
        if not get_settings().broker_url.startswith(("redis://", "rediss://")):
            return
        depths = queue_depths()
        if depths is None:
            yield _up("broker", False)
            return
        depth = GaugeMetricFamily("cometjobs_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        for queue, length in depths.items():
            depth.add_metric([queue], length)
        yield depth
        yield _up("broker", True)


class _Registry(Collector):
    """Another registry's metrics, as one collector."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's files in multiprocess mode."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import ProcessCollector, multiprocess

        multiprocess.MultiProcessCollector(registry)
        # Files carry no process_* series: these are of the process answering the scrape.
        ProcessCollector(registry=registry)
    else:
        registry.register(_Registry(REGISTRY))
    return registry


def build_registry() -> CollectorRegistry:
    registry = process_registry()
    registry.register(DatabaseCollector())
    registry.register(QueueCollector())
    registry.register(StorageCollector())
    return registry


_registry: CollectorRegistry | None = None


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics"}},
)
def metrics_endpoint() -> Response:
    global _registry
    if _registry is None:
        _registry = build_registry()
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)
