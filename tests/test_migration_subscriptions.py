"""The job-subscription migration (0005 on this branch), on Postgres and SQLite: a live
job that inherited its client's `webhook_events` (stored as `[]`) gets that list; its own
list, and finished jobs, are left alone. The chain against the models is checked on
its own (`command.check` here; main's tests/test_migrations.py compares them too)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from app.core.migrate import alembic_config

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    from tests.conftest import DB_NAME, PG_HOST, PG_PORT, PG_USER, _pg_admin

    name = f"{DB_NAME}_sub_{uuid.uuid4().hex[:6]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _insert(conn: sa.Connection, table: sa.Table, **values: object) -> None:
    """A row with `values`, and a value of its type in every other NOT NULL column."""
    def filler(column: sa.Column) -> object:
        kind = column.type
        return ({} if isinstance(kind, sa.JSON) else NOW if isinstance(kind, sa.DateTime)
                else False if isinstance(kind, sa.Boolean) else 0 if isinstance(kind, sa.Integer | sa.Float)
                else "x")

    row = {c.name: filler(c) for c in table.columns
           if not c.nullable and c.server_default is None and c.name not in values}
    conn.execute(table.insert().values(**row, **values))


def test_live_jobs_get_the_client_events_they_inherited(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "0004")
    engine = sa.create_engine(database_url)
    try:
        old = sa.MetaData()
        old.reflect(engine, only=["clients", "jobs"])
        clients, jobs = old.tables["clients"], old.tables["jobs"]
        with engine.begin() as conn:
            _insert(conn, clients, id="cli_1", api_key_hash="h1", webhook_events=["job.running"])
            _insert(conn, clients, id="cli_2", api_key_hash="h2", webhook_events=[])
            for job_id, client_id, status, events in (
                ("job_live", "cli_1", "running", []), ("job_own", "cli_1", "queued", ["job.progress"]),
                ("job_done", "cli_1", "succeeded", []), ("job_none", "cli_2", "queued", []),
            ):
                _insert(conn, jobs, id=job_id, client_id=client_id, status=status, webhook_events=events)
        command.upgrade(config, "head")
        with engine.connect() as conn:
            rows = {r.id: r.webhook_events for r in conn.execute(sa.select(jobs.c.id, jobs.c.webhook_events))}
        assert rows == {"job_live": ["job.running"], "job_own": ["job.progress"], "job_done": [], "job_none": []}
        command.check(config)  # raises when the models need a migration the chain lacks
    finally:
        engine.dispose()
