"""The migrations against the models, on Postgres and SQLite: `head` is exactly what the
models declare; the volume migration (0005) carries a running job's poll schedule out
of `jobs` and back on a downgrade; the subscription migration (0006) gives a live job
that inherited its client's `webhook_events` (stored as `[]`) that list, and leaves a
job's own list and finished jobs alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from app.core.migrate import alembic_config

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    from tests.conftest import DB_NAME, PG_HOST, PG_PORT, PG_USER, _pg_admin

    name = f"{DB_NAME}_mig_{uuid.uuid4().hex[:6]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _filler(column: sa.Column) -> object:
    """A value of the column's type, for the NOT NULL columns a test row does not care about."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return {}
    if isinstance(kind, sa.DateTime):
        return NOW
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer | sa.Numeric | sa.Float):
        return 0
    return "x"


def _insert(conn: sa.Connection, table: sa.Table, **values: object) -> None:
    row = {c.name: _filler(c) for c in table.columns
           if not c.nullable and c.server_default is None and c.name not in values}
    conn.execute(table.insert().values(**row, **values))


def _differences(engine: sa.Engine) -> list[object]:
    import app.models  # noqa: F401  (every table registered)
    from app.core.db import Base

    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


@contextmanager
def _at(database_url: str, revision: str) -> Iterator[tuple[Config, sa.Engine, dict[str, sa.Table]]]:
    """The database migrated to `revision`, with its `clients` and `jobs` tables as they are there."""
    config = alembic_config(database_url)
    command.upgrade(config, revision)
    engine = sa.create_engine(database_url)
    try:
        old = sa.MetaData()
        old.reflect(engine, only=["clients", "jobs"])
        yield config, engine, dict(old.tables)
    finally:
        engine.dispose()


def test_head_matches_the_models_and_0005_round_trips_a_running_job(database_url: str) -> None:
    with _at(database_url, "0004") as (config, engine, old):
        with engine.begin() as conn:
            _insert(conn, old["clients"], id="cli_1")
            _insert(conn, old["jobs"], id="job_run", client_id="cli_1", status="running",
                    due_at=NOW + timedelta(seconds=5), stall_deadline_at=NOW + timedelta(minutes=10),
                    deadline_at=NOW + timedelta(hours=1), timeout_at=NOW + timedelta(minutes=10),
                    poll_count=7, poll_errors=2)
            _insert(conn, old["jobs"], id="job_wait", client_id="cli_1", status="queued",
                    due_at=NOW, deadline_at=NOW + timedelta(hours=1), timeout_at=NOW + timedelta(minutes=30))

        command.upgrade(config, "head")
        assert _differences(engine) == []
        with engine.connect() as conn:
            schedule = conn.execute(sa.text(
                "SELECT due_at, stall_at, poll_count, poll_errors FROM job_polls WHERE job_id = 'job_run'")).one()
            jobs = dict(conn.execute(sa.text("SELECT id, due_at FROM jobs")).all())
        assert (schedule.poll_count, schedule.poll_errors) == (7, 2)
        assert jobs["job_run"] is None and jobs["job_wait"] is not None  # the queued job keeps its nudge

        command.downgrade(config, "0004")
        with engine.connect() as conn:
            back = conn.execute(sa.text(
                "SELECT poll_count, poll_errors, due_at IS NOT NULL FROM jobs WHERE id = 'job_run'")).one()
        assert tuple(back) == (7, 2, True)
        command.upgrade(config, "head")
        assert _differences(engine) == []


def test_0006_gives_live_jobs_the_client_events_they_inherited(database_url: str) -> None:
    with _at(database_url, "0005") as (config, engine, old):
        clients, jobs = old["clients"], old["jobs"]
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
