"""The scheduler's leadership lock: one holder at a time, freed when its holder goes."""

from __future__ import annotations

import psycopg
import pytest

from app.core.leader import FileLeadership, PostgresLeadership


class TestPostgres:
    @pytest.fixture
    def url(self, database):
        return database

    def test_one_holder_at_a_time_and_the_next_takes_over_on_release(self, url):
        first, second = PostgresLeadership(url, "test-lock", 3), PostgresLeadership(url, "test-lock", 3)
        try:
            assert first.try_acquire()
            assert not second.try_acquire()
            assert first.still_held()
            first.release()
            assert second.try_acquire()
        finally:
            first.release()
            second.release()

    def test_a_holder_whose_session_died_knows_it_and_the_lock_is_free(self, url):
        first, second = PostgresLeadership(url, "test-lock-2", 3), PostgresLeadership(url, "test-lock-2", 3)
        try:
            assert first.try_acquire()
            assert first.conn is not None
            pid = first.conn.info.backend_pid
            with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as admin:
                # The timeout makes the call wait until the backend has exited and its locks are gone.
                admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            assert not first.still_held()
            assert second.try_acquire()
        finally:
            first.release()
            second.release()


class TestFile:
    def test_one_holder_at_a_time(self, tmp_path):
        first, second = FileLeadership(tmp_path / "s.lock"), FileLeadership(tmp_path / "s.lock")
        assert first.try_acquire()
        assert not second.try_acquire()
        first.release()
        assert second.try_acquire()
        second.release()
