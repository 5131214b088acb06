"""Engine, sessions and the declarative base shared by every table."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeAlias, Unpack, cast

from sqlalchemy import (
    JSON,
    BindParameter,
    CursorResult,
    DateTime,
    MetaData,
    Result,
    Row,
    Table,
    TypeDecorator,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.core.settings import Settings, get_settings

# The instant in statements built once at import (claims, probes): `{"now": ...}` when executed.
NOW: BindParameter[Any] = bindparam("now")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


# A row of any shape (SQLAlchemy's Row is generic over its columns' types).
AnyRow: TypeAlias = Row[Unpack[tuple[Any, ...]]]


def table(model: type[Base]) -> Table:
    """A model's Table, for Core statements (executemany with bind parameters)."""
    return cast(Table, model.__table__)


def affected(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (SQLAlchemy types `rowcount` on CursorResult only)."""
    return cast(CursorResult[Any], result).rowcount


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while a worker writes; busy_timeout waits out the
    # writer lock instead of failing at once (API, worker and beat share the file).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, hide_parameters=True,
                               connect_args={"timeout": 15, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    statement_ms = int(settings.db_statement_timeout.total_seconds() * 1000)
    engine = create_engine(
        url,
        # A statement's error names the statement, never the values bound to it: they are
        # callers' data (webhook URLs, metadata, inputs) and end up in logs.
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # A dead database must surface as an error within seconds, never a hang.
        pool_timeout=settings.db_connect_timeout.total_seconds() + 2,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": max(1, int(settings.db_connect_timeout.total_seconds())),
            "options": f"-c statement_timeout={statement_ms}",
            "application_name": "cometjobs",
        },
    )
    _ping_when_idle(engine, settings.db_ping_idle.total_seconds())
    return engine


def upsert_into(session: Session, entity: Any) -> Any:
    """An INSERT with its dialect's `on_conflict_do_*` (Postgres, or SQLite in `make dev`)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(entity)


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """SQLAlchemy's pre-ping, for connections idle longer than `idle_seconds` only.

    Pinging at every checkout costs each request a round trip (a busy API answered GET
    by id about a fifth faster without it). A connection idle for a while is the one a
    database restart may have cut: it is pinged, and a dead one is replaced before
    use. One back from use within the last second is handed out as it is; if the
    database went away in that second, its statement fails as a disconnect, which
    invalidates the whole pool, so only requests already under way see the error."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # new, or just back from use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool discards it and connects afresh
            raise DisconnectionError("a pooled connection did not answer its ping") from exc


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings())


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False, autoflush=False)


@lru_cache
def _reader() -> sessionmaker[Session]:
    engine = get_engine()
    if engine.dialect.name == "postgresql":
        # The driver's autocommit, set and reset on the pooled connection without a round trip.
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def reset_engine() -> None:
    """Forget the pooled engine (after a fork, or when settings change in tests)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    _reader.cache_clear()


def close_session(session: Session) -> None:
    """Close `session` without raising: whatever is open is rolled back and the
    connection goes back to the pool; if the database died under it, the dead
    connection is discarded instead (the caller's own error, if any, stands)."""
    try:
        session.close()
    except DBAPIError:
        session.invalidate()


@contextmanager
def _closing(session: Session) -> Iterator[Session]:
    try:
        yield session
    finally:
        close_session(session)


def open_session() -> AbstractContextManager[Session]:
    """A session for one request's work in the thread that does it; whoever uses it
    commits, and whatever is left open is rolled back on the way out (`close_session`)."""
    return _closing(get_sessionmaker()())


def read_session() -> AbstractContextManager[Session]:
    """A session for a read that Postgres answers in one statement (a job's view, a page
    of jobs, a key's client). Each statement runs on its own (autocommit): one round trip,
    where a transaction costs three (BEGIN, the read, ROLLBACK). Not for writes, nor for
    reads whose statements must agree (each may see a later moment). On SQLite (`make
    dev`), where the same reads take several statements, an ordinary session."""
    return _closing(_reader()())


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work for a task: commit on success, roll back on error."""
    with open_session() as session:
        yield session
        session.commit()


_ON_COMMIT = "cometjobs_on_commit"


def on_commit(session: Session, callback: Callable[[], object]) -> None:
    """Run `callback` once `session` commits; drop it if the session rolls back.
    The one after-commit buffer: queue messages and metrics both wait here, so a
    rolled-back change is never announced or counted."""
    session.info.setdefault(_ON_COMMIT, []).append(callback)


@contextmanager
def savepoint(session: Session, *, enabled: bool = True) -> Iterator[None]:
    """Undo the block's writes and drop what it buffered for after commit if it raises;
    keep everything else (what was buffered before it waits for the enclosing commit).
    `enabled=False` (SQLite, whose driver's savepoints are unreliable) only trims the buffer."""
    kept = list(session.info.get(_ON_COMMIT) or ())
    nested = session.begin_nested() if enabled else None
    try:
        yield
    except BaseException:
        if nested is not None and nested.is_active:
            nested.rollback()
        if session.in_transaction():
            session.info[_ON_COMMIT] = kept
        raise
    if nested is not None:
        nested.commit()


# SQLAlchemy reports a savepoint's release and rollback through these events too; the
# enclosing transaction is then still open, and decides.
@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    for callback in session.info.pop(_ON_COMMIT, None) or ():
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_on_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        return
    session.info.pop(_ON_COMMIT, None)
