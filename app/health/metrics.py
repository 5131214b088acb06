"""`GET /metrics`: process metrics plus gauges read from Postgres and the broker
at scrape time (jobs per state, webhook backlog, queue depth)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.core.db import get_sessionmaker
from app.core.settings import get_settings
from app.jobs.states import ACTIVE

router = APIRouter(tags=["health"])


class DatabaseCollector(Collector):
    """Cheap aggregate queries; both are served by indexes on (status, ...)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from app.jobs.models import Job
        from app.webhooks.models import WebhookDelivery

        jobs = GaugeMetricFamily("cometjobs_jobs_in_state", "Jobs currently in each non-terminal state", labels=["state"])
        backlog = GaugeMetricFamily("cometjobs_webhook_backlog", "Webhook deliveries not yet delivered or dead")
        oldest = GaugeMetricFamily(
            "cometjobs_webhook_oldest_pending_age_seconds", "Age of the oldest undelivered webhook event"
        )
        try:
            with get_sessionmaker()() as session:
                counts = dict(
                    session.execute(
                        select(Job.status, func.count()).where(Job.status.in_([s.value for s in ACTIVE])).group_by(Job.status)
                    ).all()
                )
                pending, first = session.execute(
                    select(func.count(), func.min(WebhookDelivery.created_at)).where(WebhookDelivery.status == "pending")
                ).one()
        except Exception:
            return
        for state in sorted(s.value for s in ACTIVE):
            jobs.add_metric([state], counts.get(state, 0))
        backlog.add_metric([], pending or 0)
        if first is not None and first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        oldest.add_metric([], (datetime.now(UTC) - first).total_seconds() if first else 0.0)
        yield jobs
        yield backlog
        yield oldest


class QueueCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from workers.config import QUEUES

        url = get_settings().broker_url
        depth = GaugeMetricFamily("cometjobs_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        if not url.startswith(("redis://", "rediss://")):
            return
        import redis

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
            prefix = get_settings().broker_key_prefix
            with client.pipeline() as pipe:
                for queue in QUEUES:
                    pipe.llen(f"{prefix}{queue}")
                lengths = pipe.execute()
            client.close()
        except Exception:
            return
        for queue, length in zip(QUEUES, lengths, strict=True):
            depth.add_metric([queue], length)
        yield depth


def build_registry() -> CollectorRegistry:
    from prometheus_client import REGISTRY

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 - the default registry's collectors
            registry.register(collector)
    registry.register(DatabaseCollector())
    registry.register(QueueCollector())
    return registry


_registry: CollectorRegistry | None = None


@router.get("/metrics", operation_id="metrics", summary="Prometheus metrics", response_class=Response)
def metrics_endpoint() -> Response:
    global _registry
    if _registry is None:
        _registry = build_registry()
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)
