"""Leadership among processes of one deployment: at most one holder at a time, and the
lock goes when its holder goes.

Postgres: a session-level advisory lock on a connection of its own. When the holder
dies (killed, host lost, connection cut), Postgres ends the session and the lock is
free for the next candidate. SQLite (the embedded default, one machine): an
exclusive `flock` on a file next to the database, freed by the kernel when the
process exits.

A holder learns that it lost the lock only at its next `still_held()`, so for up to
one check interval two processes may both believe they lead. Everything guarded by
leadership must therefore be safe to run twice at once (it is: every tick claims its
rows with row locks); leadership keeps the work from being done N times, it is not
what keeps it correct.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

import psycopg
from sqlalchemy.engine import make_url

from app.core.settings import Settings


class Leadership(Protocol):
    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key per (name): advisory locks share one namespace per database."""
    return int.from_bytes(hashlib.sha256(f"cometjobs:{name}".encode()).digest()[:8], "big", signed=True)


class PostgresLeadership:
    def __init__(self, database_url: str, name: str, connect_timeout: float) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.key = _lock_key(name)
        self.connect_timeout = max(1, int(connect_timeout))
        self.conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        # Keepalives: a holder whose database vanished must notice within seconds, not hours.
        return psycopg.connect(
            self.dsn, autocommit=True, connect_timeout=self.connect_timeout, application_name="cometjobs-leader",
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
        )

    def try_acquire(self) -> bool:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self._connect()
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error:
            self._drop()
            return False
        return bool(row and row[0])

    def still_held(self) -> bool:
        if self.conn is None or self.conn.closed:
            return False
        try:
            # A session lock lives exactly as long as its session: if this connection still
            # answers, the session and its lock are still ours.
            self.conn.execute("SELECT 1")
        except psycopg.Error:
            self._drop()
            return False
        return True

    def release(self) -> None:
        # Unlock before closing: a closed socket frees the lock only once the server has
        # noticed and ended the session, so the next candidate could still find it taken.
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except psycopg.Error:
                pass
        self._drop()

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None


class FileLeadership:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def still_held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def leadership(settings: Settings, name: str) -> Leadership:
    if settings.is_sqlite:
        return FileLeadership(settings.data_dir.resolve() / f"{name}.lock")
    return PostgresLeadership(settings.database_url, name, settings.db_connect_timeout.total_seconds())


__all__ = ["FileLeadership", "Leadership", "PostgresLeadership", "leadership"]
