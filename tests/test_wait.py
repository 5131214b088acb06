"""Waiting instead of polling: `GET /v1/jobs/{id}?wait=N` and `POST /v1/jobs` with
`Prefer: wait=N` answer when a NOTIFY sent with the job's change is heard. Each test's
wait is far longer than its deadline, so only the notification can make it pass. A worker
may be running in this session: the jobs' prompts stall upstream, so nothing ends unless
the test ends it, and the tests change jobs by cancelling them (legal from any state)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from app.core.clock import utcnow
from app.core.db import session_scope
from app.jobs.states import ACTIVE, ErrorSource, JobStatus
from app.jobs.transitions import fail
from tests.support.waiting import wait_for

JOB = {"model": "sora-2", "input": {"prompt": "a paper boat [stall]"}}
LONG = 30  # seconds a request may wait; every deadline below is much shorter


@pytest.fixture
def caller(api, make_client):
    return make_client()


class Call:
    """A request answered on another thread, so the test can act while it waits."""

    def __init__(self, send: Callable[[], Any]) -> None:
        self.response: Any = None
        self.thread = threading.Thread(target=self._run, args=(send,), daemon=True)
        self.thread.start()

    def _run(self, send: Callable[[], Any]) -> None:
        self.response = send()

    def answer(self, timeout: float = 10) -> Any:
        wait_for(lambda: self.response is not None, timeout=timeout, interval=0.02, message="the answer")
        return self.response


def cancel(job_id: str) -> None:
    """Through `move()` in this process, as a worker would: the NOTIFY goes out at commit."""
    with session_scope() as session:
        assert fail(session, job_id, expected=ACTIVE, to=JobStatus.CANCELED, now=utcnow(), code="canceled",
                    message="test", source=ErrorSource.CANCELED)


def new_job(api, caller) -> dict:
    return api.post("/v1/jobs", json=JOB, headers=caller.headers).json()


def waiting_requests() -> int:
    from app.jobs.waiting import _watch

    watch = _watch.get("watch")
    return watch.waiting if watch else 0


class TestLongPoll:
    def test_answers_when_the_status_changes(self, api, caller):
        job = new_job(api, caller)
        call = Call(lambda: api.get(f"/v1/jobs/{job['id']}?wait={LONG}", headers=caller.headers))
        wait_for(lambda: waiting_requests() == 1, timeout=10, interval=0.02, message="the request to wait")
        cancel(job["id"])
        response = call.answer()
        assert response.status_code == 200
        assert response.json()["status"] != "queued"
        assert response.headers["ETag"] != 'W/"queued.0"'

    def test_a_job_already_past_the_etag_is_answered_at_once(self, api, caller):
        job = new_job(api, caller)
        seen = api.get(f"/v1/jobs/{job['id']}", headers=caller.headers).headers["ETag"]
        cancel(job["id"])
        call = Call(lambda: api.get(f"/v1/jobs/{job['id']}?wait={LONG}",
                                    headers={**caller.headers, "If-None-Match": seen}))
        assert call.answer().json()["status"] == "canceled"

    def test_a_finished_job_is_answered_at_once(self, api, caller):
        job = new_job(api, caller)
        api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
        call = Call(lambda: api.get(f"/v1/jobs/{job['id']}?wait={LONG}", headers=caller.headers))
        assert call.answer().json()["status"] == "canceled"

    def test_without_a_change_it_answers_the_job_after_the_wait(self, api, caller):
        job = new_job(api, caller)
        response = api.get(f"/v1/jobs/{job['id']}?wait=1", headers=caller.headers)
        assert response.status_code == 200 and response.json()["status"] != "canceled"
        assert waiting_requests() == 0

    @pytest.mark.parametrize("wait", ["61", "-1", "x", "1.5"])
    def test_a_wait_out_of_range_is_422(self, api, caller, wait):
        job = new_job(api, caller)
        response = api.get(f"/v1/jobs/{job['id']}?wait={wait}", headers=caller.headers)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    def test_another_clients_job_is_404_without_waiting(self, api, caller, make_client):
        job = new_job(api, caller)
        other = make_client("other")
        call = Call(lambda: api.get(f"/v1/jobs/{job['id']}?wait={LONG}", headers=other.headers))
        assert call.answer().status_code == 404


class TestPreferWait:
    def test_a_job_that_ends_in_time_is_200(self, api, caller):
        call = Call(lambda: api.post("/v1/jobs", json=JOB,
                                     headers={**caller.headers, "Prefer": f"wait={LONG}"}))
        job_id = wait_for(lambda: api.get("/v1/jobs", headers=caller.headers).json()["data"], timeout=10,
                          interval=0.02, message="the job")[0]["id"]
        wait_for(lambda: waiting_requests() == 1, timeout=10, interval=0.02, message="the request to wait")
        api.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers)
        response = call.answer()
        assert response.status_code == 200
        assert response.json()["status"] == "canceled"
        assert response.headers["Preference-Applied"] == f"wait={LONG}"

    def test_a_job_still_running_after_the_wait_is_202(self, api, caller):
        response = api.post("/v1/jobs", json=JOB, headers={**caller.headers, "Prefer": "respond-async, wait=0"})
        assert response.status_code == 202
        assert response.headers["Preference-Applied"] == "wait=0"
        assert response.json()["status"] in ("queued", "submitting", "running")

    def test_without_prefer_nothing_changes(self, api, caller):
        response = api.post("/v1/jobs", json=JOB, headers=caller.headers)
        assert response.status_code == 202 and "Preference-Applied" not in response.headers

    def test_a_replayed_key_whose_job_ended_is_200_at_once(self, api, caller):
        headers = {**caller.headers, "Idempotency-Key": "k-ended"}
        job = api.post("/v1/jobs", json=JOB, headers=headers).json()
        api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
        call = Call(lambda: api.post("/v1/jobs", json=JOB, headers={**headers, "Prefer": f"wait={LONG}"}))
        response = call.answer()
        assert response.status_code == 200 and response.json()["status"] == "canceled"
        assert response.headers["Preference-Applied"] == f"wait={LONG}"
        assert response.headers["Idempotent-Replayed"] == "true"


class TestListenerLoss:
    def test_a_change_made_while_the_listener_is_down_still_answers(self, api, caller):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        from app.jobs.waiting import _watch
        from tests.conftest import DB_NAME, PG_HOST, PG_PORT, PG_USER

        job = new_job(api, caller)
        call = Call(lambda: api.get(f"/v1/jobs/{job['id']}?wait={LONG}", headers=caller.headers))
        wait_for(lambda: waiting_requests() == 1, timeout=10, interval=0.02, message="the request to wait")
        watch = _watch["watch"]
        assert watch.dsn is not None
        # The request's first use started the listener; on a busy machine it may still be connecting.
        wait_for(watch.connected.is_set, timeout=10, interval=0.02, message="the listener to connect")
        # The listener of this test's app: on the private database (each test process has its
        # own), not a stale one a previous app in this process left on another.
        listening_on = conninfo_to_dict(watch.dsn)["dbname"]
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=DB_NAME, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE application_name = 'cometjobs-watch' AND datname = %s", (listening_on,)).fetchall()
        assert killed == [(True,)]  # this app's listener was there, and is gone
        # Changed while nobody listens: the listener reconnects and every waiter reads again.
        cancel(job["id"])
        assert call.answer().json()["status"] == "canceled"
