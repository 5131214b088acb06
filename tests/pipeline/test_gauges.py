"""The database gauges of /metrics: one reading per COMETJOBS_METRICS_DB_CACHE per process."""

from __future__ import annotations

from datetime import timedelta


def test_a_reading_is_reused_within_its_ttl_and_ages_keep_moving(inproc, monkeypatch):
    from app.core.settings import get_settings
    from app.health.metrics import DatabaseCollector

    collector = DatabaseCollector()
    client = inproc.client()
    inproc.create_job(client)
    monkeypatch.setattr(get_settings(), "metrics_db_cache", timedelta(seconds=3600))
    first = collector.reading(inproc.clock.now)
    inproc.create_job(client)
    assert collector.reading(inproc.clock.now) is first  # cached: one set of queries per TTL
    assert first.per_state["queued"][0] == 1

    monkeypatch.setattr(get_settings(), "metrics_db_cache", timedelta(0))
    collector = DatabaseCollector()
    assert collector.reading(inproc.clock.now).per_state["queued"][0] == 2
    assert collector.reading(inproc.clock.now) is not collector.reading(inproc.clock.now)  # 0: every scrape reads


def test_the_gauges_come_from_the_live_rows_only(inproc):
    from prometheus_client import CollectorRegistry, generate_latest

    from app.health.metrics import DatabaseCollector

    client = inproc.client()
    inproc.create_job(client)
    canceled = inproc.create_job(client)
    with inproc.api() as api:
        assert api.post(f"/v1/jobs/{canceled}/cancel", headers=inproc.headers(client)).status_code == 200
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    text = generate_latest(registry).decode()
    assert 'cometjobs_jobs{state="queued"} 1.0' in text
    assert 'state="canceled"' not in text
