"""`GET /metrics`: this process's metrics (or every process's, in multiprocess
mode) plus gauges read at scrape time from Postgres (jobs per state, webhook
backlog) and from the broker (queue depth)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from app.core.boundary import CheckedRoute
from app.core.db import get_sessionmaker
from app.core.settings import get_settings
from app.core.tasks import QueueName
from app.jobs.states import ACTIVE

router = APIRouter(tags=["health"], route_class=CheckedRoute)
# A scrape must answer quickly even when the database is slow.
SCRAPE_STATEMENT_TIMEOUT_MS = 2000


def _up(name: str, ok: bool) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        f"cometjobs_{name}_scrape_success", f"1 when the {name} gauges were read at this scrape, else 0"
    )
    gauge.add_metric([], 1.0 if ok else 0.0)
    return gauge


class DatabaseCollector(Collector):
    """Two aggregate queries, both served by the (status, ...) indexes."""

    def collect(self) -> Iterator[Metric]:
        from app.jobs.models import Job
        from app.webhooks.models import WebhookDelivery

        try:
            with get_sessionmaker()() as session:
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(text(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}"))
                counts = dict(
                    session.execute(
                        select(Job.status, func.count())
                        .where(Job.status.in_([s.value for s in ACTIVE]))
                        .group_by(Job.status)
                    ).all()
                )
                pending, first = session.execute(
                    select(func.count(), func.min(WebhookDelivery.created_at))
                    .where(WebhookDelivery.status == "pending")
                ).one()
        except Exception:
            yield _up("database", False)
            return
        jobs = GaugeMetricFamily("cometjobs_jobs", "Jobs currently in each non-terminal state", labels=["state"])
        for state in sorted(s.value for s in ACTIVE):
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        backlog = GaugeMetricFamily(
            "cometjobs_webhook_pending_deliveries", "Webhook deliveries not yet delivered, dead or canceled"
        )
        backlog.add_metric([], pending or 0)
        yield backlog
        if first is not None and first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        oldest = GaugeMetricFamily(
            "cometjobs_webhook_oldest_pending_age_seconds", "Age of the oldest undelivered webhook event (0: none)"
        )
        oldest.add_metric([], max(0.0, (datetime.now(UTC) - first).total_seconds()) if first else 0.0)
        yield oldest
        yield _up("database", True)


class QueueCollector(Collector):
    """Messages waiting in each Celery queue (Redis broker: one LLEN per queue)."""

    def collect(self) -> Iterator[Metric]:
        settings = get_settings()
        if not settings.broker_url.startswith(("redis://", "rediss://")):
            return
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
            yield _up("broker", False)
            return
        depth = GaugeMetricFamily("cometjobs_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        for queue, length in zip(QueueName, lengths, strict=True):
            depth.add_metric([queue.value], length)
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
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Registry(REGISTRY))
    return registry


def build_registry() -> CollectorRegistry:
    registry = process_registry()
    registry.register(DatabaseCollector())
    registry.register(QueueCollector())
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
