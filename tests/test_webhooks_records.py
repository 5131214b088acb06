"""The delivery records in Postgres: per-job ordering of claims, the claim guard
that keeps a late or superseded attempt from overwriting newer state, the end
of the schedule, progress coalescing and the job's webhook state.

These call the service and repository directly against a real Postgres database
of their own: the shared test worker (which claims whatever is due, and is nudged
by every redelivery) must never race them. Rows are created due an hour from now
and claimed "an hour from now".
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.clients.models import Client
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.ids import new_id
from app.core.settings import get_settings
from app.jobs.models import Job
from app.webhooks import repository as repo
from app.webhooks import service
from app.webhooks.models import WebhookAttempt, WebhookDelivery
from app.webhooks.service import AttemptResult, Outgoing

LATER = timedelta(hours=1)


@pytest.fixture(autouse=True)
def publisher():  # type: ignore[no-untyped-def]
    """Creating an event nudges its delivery after commit: record the nudges (this file ran
    only after some other test had installed a publisher for the whole process)."""
    from app.core import queue
    from tests.support.inprocess import RecordingPublisher

    recorder = RecordingPublisher()
    previous = queue.install(recorder)
    yield recorder
    queue.install(previous)


@pytest.fixture(autouse=True)
def empty_tables(own_database: str) -> None:
    import psycopg

    from tests.conftest import PG_HOST, PG_PORT, PG_USER, TABLES

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=own_database, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="module")
def own_database(database: str):
    """Point this process's engine at a private, migrated database for this module."""
    import os

    import psycopg

    from app.core.db import reset_engine
    from app.core.migrate import upgrade
    from tests.conftest import DB_NAME, PG_HOST, PG_PORT, PG_USER

    name = f"{DB_NAME}_records"
    admin = {"host": PG_HOST, "port": PG_PORT, "user": PG_USER, "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    shared = os.environ["COMETJOBS_DATABASE_URL"]
    private = shared.rsplit("/", 1)[0] + f"/{name}"
    upgrade(private)
    os.environ["COMETJOBS_DATABASE_URL"] = private
    get_settings.cache_clear()
    reset_engine()
    yield name
    os.environ["COMETJOBS_DATABASE_URL"] = shared
    get_settings.cache_clear()
    reset_engine()
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
OK = AttemptResult(200, 5, "ok", None)
FAIL = AttemptResult(503, 5, "busy", "HTTP 503")


@pytest.fixture
def job(make_client) -> dict:
    client = make_client(webhook_url="http://127.0.0.1:9/hook")
    now = utcnow()
    job_id = new_id("job")
    with session_scope() as session:
        session.add(Job(
            id=job_id, client_id=client["id"], model="sora-2", family="sora", kind="video", input={}, meta={},
            webhook_url="http://127.0.0.1:9/hook", webhook_events=[], storage_prefix=f"{client['id']}/{job_id}",
            status="running", progress=10, due_at=now + 10 * LATER, created_at=now, updated_at=now,
            status_changed_at=now, progress_at=now,
        ))
    return {"id": job_id, "client_id": client["id"]}


def event(job: dict, event_type: str, at: timedelta = LATER) -> str:
    with session_scope() as session:
        client = session.get(Client, job["client_id"])
        delivery_id = service.create_event(session, job_id=job["id"], client=client, url=client.webhook_url,
                                           event_type=event_type, data={"id": job["id"]}, now=utcnow() + at)
    assert delivery_id
    return delivery_id


def claim(at: timedelta = LATER, limit: int = 10) -> list[Outgoing]:
    now = utcnow() + at
    lease = now + get_settings().webhook_lease
    with session_scope() as session:
        rows = repo.claim(session, now, lease, limit)
    return [Outgoing(r.id, r.job_id, r.client_id, r.url, r.payload, r.event_type, r.attempts, lease) for r in rows]


def record(item: Outgoing, result: AttemptResult, at: timedelta = LATER) -> str:
    with session_scope() as session:
        [outcome] = service.record(session, get_settings(), [(item, result)], utcnow() + at)
    return outcome


def delivery(delivery_id: str) -> WebhookDelivery:
    with session_scope() as session:
        found = repo.get(session, delivery_id)
        assert found is not None
        return found


def attempts(delivery_id: str) -> list[tuple[int, int | None]]:
    with session_scope() as session:
        rows = session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                               .order_by(WebhookAttempt.attempt))
        return [(a.attempt, a.status_code) for a in rows]


class TestPerJobOrder:
    def test_a_later_event_is_not_claimed_while_an_earlier_one_is_pending(self, job):
        running = event(job, "job.running")
        succeeded = event(job, "job.succeeded")
        [first] = claim()
        assert first.id == running
        assert claim() == []  # the terminal event waits, even though it is due
        assert record(first, FAIL) == "pending"
        assert claim(LATER + timedelta(milliseconds=100)) == []  # the retry is not due yet (0.3 s), nor what waits
        [retry] = claim(LATER + timedelta(hours=1))
        assert retry.id == running and retry.attempt == 2
        assert record(retry, OK) == "delivered"
        [then] = claim()
        assert then.id == succeeded

    def test_a_dead_earlier_event_releases_the_next(self, job):
        running = event(job, "job.running")
        succeeded = event(job, "job.succeeded")
        schedule = get_settings().webhook_retry_schedule
        for n in range(len(schedule) + 1):
            [item] = claim(LATER + timedelta(hours=n))
            assert (item.id, item.attempt) == (running, n + 1)
            outcome = record(item, FAIL, LATER + timedelta(hours=n))
        assert outcome == "dead"
        assert delivery(running).next_attempt_at is None
        [then] = claim(LATER + timedelta(hours=len(schedule) + 1))
        assert then.id == succeeded


class TestClaimGuard:
    def test_an_outcome_arriving_after_a_cancel_does_not_revive_the_delivery(self, job):
        running = event(job, "job.running")
        [item] = claim()
        with session_scope() as session:
            repo.cancel_pending(session, job["id"], ["job.running"], utcnow())
        assert record(item, OK) == "stale"
        assert delivery(running).status == "canceled"
        assert attempts(running) == [(1, 200)]  # the attempt happened, and is on record

    def test_a_late_outcome_of_an_earlier_claim_is_ignored_after_a_redelivery(self, job):
        running = event(job, "job.running")
        [old] = claim()
        with session_scope() as session:
            repo.cancel_pending(session, job["id"], ["job.running"], utcnow())
            assert service.redeliver(session, [running]) == [running]
        [new] = claim(LATER + timedelta(minutes=1))
        assert new.attempt == 2
        assert record(old, FAIL) == "stale"
        assert record(new, OK) == "delivered"
        assert delivery(running).status == "delivered"
        assert attempts(running) == [(1, 503), (2, 200)]

    def test_a_redelivery_is_not_settled_by_an_attempt_that_started_before_it(self, job):
        running = event(job, "job.running")
        [old] = claim()
        with session_scope() as session:
            repo.cancel_pending(session, job["id"], ["job.running"], utcnow())
            service.redeliver(session, [running])
        assert record(old, OK) == "stale"  # same attempt count, but not the claim it was made under
        assert delivery(running).status == "pending"
        [new] = claim(LATER + timedelta(minutes=1))
        assert (new.id, new.attempt) == (running, 2)

    def test_a_lapsed_lease_is_claimed_again_and_the_first_claimer_loses(self, job):
        succeeded = event(job, "job.succeeded")
        [first] = claim()
        assert claim(LATER + timedelta(seconds=1)) == []  # leased
        [second] = claim(LATER + get_settings().webhook_lease + timedelta(seconds=1))
        assert second.attempt == 2
        assert record(first, OK) == "stale"
        assert record(second, FAIL) == "pending"
        state = delivery(succeeded)
        assert (state.status, state.attempts, state.last_status_code) == ("pending", 2, 503)

    def test_a_claim_handed_back_unsent_is_due_again_without_using_an_attempt(self, job):
        succeeded = event(job, "job.succeeded")
        [item] = claim()
        with session_scope() as session:
            assert repo.release(session, [{"id": item.id, "attempt": 1, "lease": item.lease}], utcnow() + LATER) == 1
            assert repo.release(session, [{"id": item.id, "attempt": 1, "lease": item.lease}], utcnow()) == 0
        [again] = claim(LATER + timedelta(seconds=1))
        assert (again.id, again.attempt) == (succeeded, 1)

    def test_a_pending_delivery_is_not_reopened(self, job):
        running = event(job, "job.running")
        with session_scope() as session:
            assert service.redeliver(session, [running]) == []


class TestProgressEvents:
    def test_a_newer_progress_event_supersedes_an_unsent_one(self, job):
        first = event(job, "job.progress")
        [sent] = claim()
        assert sent.id == first
        second = event(job, "job.progress")
        third = event(job, "job.progress")
        assert delivery(first).status == "pending"  # in flight: never superseded
        assert delivery(second).status == "superseded"
        assert delivery(third).status == "pending"


    def test_the_terminal_event_drops_unsent_progress_but_not_running(self, job):
        running = event(job, "job.running")
        progress = event(job, "job.progress")
        event(job, "job.succeeded")
        assert delivery(progress).status == "superseded"
        [first] = claim()
        assert first.id == running


class TestJobWebhookState:
    def test_the_first_pending_delivery_is_what_the_job_shows(self, job):
        event(job, "job.running")
        event(job, "job.succeeded")
        [item] = claim()
        record(item, FAIL)
        with session_scope() as session:
            state = repo.webhook_state(session, [job["id"]])[job["id"]]
        assert (state.state, state.event_type, state.attempts, state.last_status_code) == (
            "retrying", "job.running", 1, 503)
        assert state.next_attempt_at is not None

    def test_once_all_settled_the_latest_delivery_is_shown(self, job):
        event(job, "job.running")
        event(job, "job.succeeded")
        for _ in range(2):
            [item] = claim()
            record(item, OK)
        with session_scope() as session:
            state = repo.webhook_state(session, [job["id"]])[job["id"]]
        assert (state.state, state.event_type, state.next_attempt_at) == ("delivered", "job.succeeded", None)
