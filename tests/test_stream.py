"""`GET /v1/jobs/{id}/events/stream`: the timeline as Server-Sent Events from the real API
process, live (woken by the job's NOTIFY) and resumable with Last-Event-ID."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import API_PORT
from tests.support.waiting import wait_for

URL = f"http://127.0.0.1:{API_PORT}"
JOB = {"model": "sora-2", "input": {"prompt": "a paper boat [stall]"}}  # never ends by itself


def sse(lines: Iterator[str]) -> Iterator[dict]:
    """Events off an event stream, as {"id", "event", "data"} (comments skipped)."""
    event: dict = {}
    for line in lines:
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value[1:] if value.startswith(" ") else value


@pytest.fixture
def caller(api_service, make_client):
    return make_client()


@pytest.fixture
def http_api(api_service, emulator):  # the emulator as a test expects it: an earlier one may have changed it
    with httpx.Client(base_url=URL, timeout=httpx.Timeout(10.0)) as client:
        yield client


def read_all(http_api, caller, job_id: str, **headers: str) -> list[dict]:
    with http_api.stream("GET", f"/v1/jobs/{job_id}/events/stream", headers={**caller.headers, **headers}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return list(sse(r.iter_lines()))


def follow(caller, job_id: str, timeout: float) -> tuple[threading.Thread, list[dict]]:
    """A thread reading the job's live stream into the returned list until it closes."""
    got: list[dict] = []

    def read() -> None:
        with httpx.stream("GET", f"{URL}/v1/jobs/{job_id}/events/stream", headers=caller.headers,
                          timeout=timeout) as response:
            for event in sse(response.iter_lines()):
                got.append(event)  # as it arrives: the test watches the list grow

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


class TestEventStream:
    def test_an_ended_job_streams_its_timeline_then_end(self, http_api, caller):
        job = http_api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        http_api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
        events = read_all(http_api, caller, job["id"])
        timeline = [e for e in events if "event" not in e]
        assert [e["data"]["status"] for e in timeline if e["data"]["type"] == "status"][-1] == "canceled"
        assert all(e["id"] == str(e["data"]["id"]) for e in timeline)
        assert events[-2]["event"] == "job" and events[-2]["data"]["status"] == "canceled"
        assert events[-1] == {"event": "end", "data": {"id": job["id"], "status": "canceled"}}
        resumed = read_all(http_api, caller, job["id"], **{"Last-Event-ID": timeline[0]["id"]})
        assert [e["id"] for e in resumed if "event" not in e] == [e["id"] for e in timeline[1:]]

    def test_a_live_stream_gets_the_change_as_it_happens(self, http_api, caller):
        job = http_api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        # The read timeout (10 s) is the deadline: only the NOTIFY can end the stream in time.
        reader, got = follow(caller, job["id"], timeout=10)
        wait_for(lambda: any(e.get("event") == "job" for e in got), timeout=10, interval=0.02,
                 message="the first job event")
        http_api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
        reader.join(timeout=10)
        assert not reader.is_alive()
        assert got[-1]["event"] == "end"
        assert any("event" not in e and e["data"]["status"] == "canceled" for e in got)

    def test_unknown_job_is_404_and_a_bad_last_event_id_is_422(self, http_api, caller):
        response = http_api.get("/v1/jobs/job_nope/events/stream", headers=caller.headers)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        job = http_api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        response = http_api.get(f"/v1/jobs/{job['id']}/events/stream",
                                headers={**caller.headers, "Last-Event-ID": "abc"})
        assert response.status_code == 422 and response.json()["code"] == "validation_error"

    def test_an_event_committed_after_a_later_one_is_still_sent(self, http_api, caller):
        """Event ids are taken at insert and seen at commit: one that took its id first may
        commit after one that took a later id, and the stream must not skip it."""
        import psycopg

        from app.jobs.notify import CHANNEL
        from tests.conftest import DB_NAME, PG_HOST, PG_PORT, PG_USER

        job = http_api.post("/v1/jobs", json=JOB, headers=caller.headers).json()

        def sent_ids() -> set[int]:
            return {int(e["id"]) for e in list(got) if "id" in e}

        insert = ("INSERT INTO job_events (job_id, type, message, data, created_at) "
                  "VALUES (%s, 'input_warning', %s, '{}', now()) RETURNING id")
        reader, got = follow(caller, job["id"], timeout=20)
        wait_for(lambda: any(e.get("event") == "job" for e in got), timeout=10, interval=0.02,
                 message="the first job event")
        connect = {"host": PG_HOST, "port": PG_PORT, "user": PG_USER, "dbname": DB_NAME}
        with psycopg.connect(**connect) as held, psycopg.connect(**connect, autocommit=True) as other:
            early = held.execute(insert, (job["id"], "took its id first")).fetchone()[0]
            late = other.execute(insert, (job["id"], "committed first")).fetchone()[0]
            other.execute("SELECT pg_notify(%s, %s)", (CHANNEL, job["id"]))
            assert early < late
            wait_for(lambda: late in sent_ids(), timeout=10, interval=0.02, message="the later event, sent")
            held.commit()
        http_api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)  # wakes the stream again
        reader.join(timeout=20)
        assert not reader.is_alive() and got[-1]["event"] == "end"
        assert early in sent_ids()
        assert sorted(int(e["id"]) for e in got if "id" in e) == sorted(sent_ids())  # each sent once


class TestConsoleTwin:
    def test_the_job_page_follows_a_session_authenticated_stream(self, api, make_client):
        from tests.test_console import sign_in

        caller, ops = make_client("svc"), make_client("ops", is_admin=True)
        job = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        api.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
        assert api.get(f"/console/jobs/{job['id']}/events/stream", follow_redirects=False).status_code != 200
        assert sign_in(api, ops["api_key"]).status_code == 303
        page = api.get(f"/console/jobs/{job['id']}").text
        assert f'data-stream-url="/console/jobs/{job["id"]}/events/stream"' in page
        response = api.get(f"/console/jobs/{job['id']}/events/stream")
        events = list(sse(iter(response.text.split("\n"))))
        assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "canceled"

    def test_a_stream_of_a_job_that_goes_on_closes_after_its_time_without_end(self, api, make_client, monkeypatch):
        from app.jobs import stream

        monkeypatch.setattr(stream, "MAX_SECONDS", 0.5)  # 60 s in service
        caller = make_client("svc")
        job = api.post("/v1/jobs", json=JOB, headers=caller.headers).json()
        events = list(sse(iter(api.get(f"/v1/jobs/{job['id']}/events/stream", headers=caller.headers)
                               .text.split("\n"))))
        kinds = [e.get("event") for e in events]
        assert kinds[:2] == [None, "job"] and "end" not in kinds  # a worker may move the job meanwhile
        assert events[0]["data"]["status"] == "queued"
