"""Migrations on a scratch Postgres database of their own: they agree with the models,
and 0005 fixes each live job's webhook subscription (the client's list it inherited)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic import command

from app.core.migrate import alembic_config
from tests.conftest import DB_NAME, TEST_ENV, _pg_admin


@pytest.fixture
def scratch_url(database: str) -> Iterator[str]:
    name = f"{DB_NAME}_mig_{uuid.uuid4().hex[:6]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield TEST_ENV["COMETJOBS_DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_0005_gives_live_jobs_their_clients_events_and_the_schema_matches_the_models(scratch_url):
    config = alembic_config(scratch_url)
    command.upgrade(config, "0004")
    with psycopg.connect(scratch_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clients (id, name, api_key_hash, api_key_hint, webhook_secret, webhook_events, settings, is_admin,"
            " created_at, updated_at) VALUES ('cli_1', 'svc', 'h', 'x', 's', '[\"job.running\"]', '{}', false, now(), now())"
        )
        for job_id, status, events in (("job_live", "running", "[]"), ("job_own", "queued", '["job.progress"]'),
                                       ("job_done", "succeeded", "[]")):
            conn.execute(
                "INSERT INTO jobs (id, client_id, model, family, kind, input, metadata, webhook_events,"
                " storage_prefix, status, progress, submit_attempts, collect_attempts, poll_count, poll_errors,"
                " created_at, updated_at, status_changed_at, progress_at)"
                " VALUES (%s, 'cli_1', 'sora-2', 'sora', 'video', '{}', '{}', %s, 'p', %s, 0, 0, 0, 0, 0,"
                " now(), now(), now(), now())",
                (job_id, events, status),
            )
        command.upgrade(config, "head")
        rows = dict(conn.execute("SELECT id, webhook_events FROM jobs").fetchall())
    assert rows == {"job_live": ["job.running"], "job_own": ["job.progress"], "job_done": []}
    command.check(config)  # raises when the models need a migration the chain lacks
