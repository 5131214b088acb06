"""The pool's ping (app/core/db.py): a connection idle past DB_PING_IDLE is checked before
use and replaced if the database dropped it; one just back from use is handed out as is."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from tests.conftest import _pg_admin


def _engine(idle: float) -> Engine:
    from app.core.db import make_engine
    from app.core.settings import get_settings

    return make_engine(get_settings().model_copy(update={"db_ping_idle": timedelta(seconds=idle), "db_pool_size": 1,
                                                         "db_max_overflow": 0}))


@pytest.fixture
def engine_with(database: str) -> Iterator[object]:
    made: list[Engine] = []

    def make(idle: float) -> Engine:
        made.append(_engine(idle))
        return made[-1]

    yield make
    for engine in made:
        engine.dispose()


def _pooled_backend(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pid: int) -> None:
    with _pg_admin() as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone()[0]


class TestPing:
    def test_an_idle_connection_the_database_dropped_is_replaced_before_use(self, engine_with):
        engine = engine_with(0)  # every returned connection counts as idle
        dropped = _pooled_backend(engine)
        _terminate(dropped)
        assert _pooled_backend(engine) != dropped  # no error reached the caller

    def test_a_connection_back_from_use_is_not_pinged_and_a_drop_then_costs_one_statement(self, engine_with):
        engine = engine_with(3600)
        dropped = _pooled_backend(engine)
        _terminate(dropped)
        with pytest.raises(OperationalError) as failed, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert failed.value.connection_invalidated
        assert _pooled_backend(engine) != dropped  # the pool was invalidated: a new connection


class TestReadSession:
    """`read_session`: a one-statement read on Postgres runs in the driver's autocommit
    (no BEGIN before it, no ROLLBACK after it), and its connection goes back to the pool
    as the other sessions expect it."""

    def test_its_statement_runs_outside_a_transaction_and_the_connection_is_reset(self, database):
        from psycopg.pq import TransactionStatus

        from app.core.db import get_engine, open_session, read_session

        with read_session() as session:
            assert session.execute(text("SELECT 1")).scalar_one() == 1
            raw = session.connection().connection.dbapi_connection
            assert raw.autocommit and raw.info.transaction_status == TransactionStatus.IDLE
        assert raw.autocommit is False  # reset on its way back into the pool
        assert get_engine().pool.checkedout() == 0
        with open_session() as session:  # an ordinary session still opens a transaction
            session.execute(text("SELECT 1"))
            ordinary = session.connection().connection.dbapi_connection
            assert not ordinary.autocommit and ordinary.info.transaction_status == TransactionStatus.INTRANS
