"""The dispatcher: upstream caps, fair share across clients, priority within a client,
the adaptive concurrency a 429 teaches, and no slot granted twice."""

from __future__ import annotations

import threading
from collections import Counter

from app.core.tasks import TaskName
from app.providers.http import UpstreamError
from tests.support.inprocess import SoraScript
from tests.support.waiting import wait_for

CAPPED = "sora-2-capped"  # tests/models.toml: two in flight at most


def granted(inproc) -> list[str]:
    ids = inproc.publisher.of(TaskName.SUBMIT_JOB)
    inproc.publisher.clear()
    return ids


class TestCaps:
    def test_grants_run_ahead_of_the_workers_by_max_pending_only(self, inproc, monkeypatch):
        from app.core.settings import get_settings

        monkeypatch.setattr(get_settings(), "dispatch_max_pending", 2)
        SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": 5}])
        client = inproc.client()
        ids = [inproc.create_job(client) for _ in range(5)]  # no cap on sora-2: only the workers bound it

        assert inproc.dispatch()["granted"] == 2
        assert inproc.dispatch() == {"granted": 0, "workers_busy": 1}  # two submits not yet done
        first = granted(inproc)
        assert inproc.submit(first[0]) == "submitted"  # a worker created one upstream: room for one more
        assert inproc.dispatch()["granted"] == 1, inproc.dispatch()
        assert granted(inproc) == [ids[2]]

    def test_a_model_never_has_more_in_flight_than_its_cap(self, inproc):
        SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": 5}])
        client = inproc.client()
        ids = [inproc.create_job(client, model=CAPPED) for _ in range(5)]

        assert inproc.dispatch()["granted"] == 2
        first = granted(inproc)
        assert first == ids[:2]  # oldest first
        assert inproc.dispatch()["granted"] == 0  # both slots held, even before the submits ran

        for job_id in first:
            inproc.submit(job_id)
        assert inproc.dispatch()["granted"] == 0  # running still holds its slot

        inproc.upstream.route("GET", r"/v1/videos/[^/]+", {"status": "completed", "progress": 100})
        inproc.clock.now = max(inproc.schedule(j).due_at for j in first)
        inproc.poll()  # both finish upstream: collecting holds no slot
        assert inproc.dispatch()["granted"] == 2
        assert granted(inproc) == ids[2:4]

    def test_the_account_total_caps_every_model_together(self, inproc, monkeypatch):
        from app.core.settings import get_settings

        monkeypatch.setattr(get_settings(), "upstream_max_in_flight", 3)
        client = inproc.client()
        for model in ("sora-2", "sora-2-pro", "sora-2", "sora-2-pro", "sora-2"):
            inproc.create_job(client, model=model)
        assert inproc.dispatch()["granted"] == 3

    def test_a_family_cap_bounds_its_models_together(self, inproc):
        from dataclasses import replace

        from app.core.db import session_scope
        from app.core.settings import get_settings
        from app.jobs.dispatch import capacity
        from app.providers.registry import catalog

        specs = {m: replace(s, family_max_in_flight=3) if s.family == "sora" else s for m, s in catalog().items()}
        with session_scope() as session:
            free, _info = capacity(session, get_settings(), {"sora-2": 2, "sora-2-pro": 1}, specs)
        assert not free.room("sora-2-pro", "sora")
        assert free.room("veo3", "veo")

    def test_a_job_that_waited_for_a_slot_says_so_on_its_timeline(self, inproc):
        client = inproc.client()
        ids = [inproc.create_job(client, model=CAPPED) for _ in range(3)]
        inproc.dispatch()
        inproc.clock.advance(30)
        with_slot_freed(inproc, ids[0])
        inproc.dispatch()
        [wait] = [e for e in inproc.timeline(ids[2]) if e.type == "slot_wait"]
        assert wait.data["waited_s"] >= 30 and wait.data["cap"] == 2
        assert not [e for e in inproc.timeline(ids[0]) if e.type == "slot_wait"]


def with_slot_freed(inproc, job_id: str) -> None:
    from app.core.db import session_scope
    from app.jobs import service

    with session_scope() as session:
        service.cancel(session, inproc.job(job_id).client_id and _owner(inproc, job_id), job_id)


def _owner(inproc, job_id):
    from app.clients.models import Client
    from app.core.db import session_scope

    with session_scope() as session:
        return session.get(Client, inproc.job(job_id).client_id)


class TestFairShare:
    def test_a_backlog_delays_another_clients_job_by_one_slot_turn(self, inproc):
        busy, quiet = inproc.client("busy"), inproc.client("quiet")
        for _ in range(40):
            inproc.create_job(busy, model=CAPPED)
        inproc.dispatch()
        granted(inproc)
        lonely = inproc.create_job(quiet, model=CAPPED)
        with_slot_freed(inproc, granted_ids(inproc, busy)[0])
        inproc.dispatch()
        assert granted(inproc) == [lonely]

    def test_weights_share_the_slots(self, inproc, monkeypatch):
        from app.core.settings import get_settings

        heavy, light = inproc.client("heavy", weight=2), inproc.client("light", weight=1)
        for _ in range(30):
            inproc.create_job(heavy)
            inproc.create_job(light)
        monkeypatch.setattr(get_settings(), "upstream_max_in_flight", 9)
        inproc.dispatch()
        owners = Counter(inproc.job(j).client_id for j in granted(inproc))
        assert owners == {heavy.id: 6, light.id: 3}

    def test_priority_then_age_within_a_client(self, inproc, monkeypatch):
        from app.core.settings import get_settings

        client = inproc.client()
        low = inproc.create_job(client, priority="low")
        normal = inproc.create_job(client)
        high_old = inproc.create_job(client, priority="high")
        high_new = inproc.create_job(client, priority="high")
        monkeypatch.setattr(get_settings(), "upstream_max_in_flight", 4)
        inproc.dispatch()
        assert granted(inproc) == [high_old, high_new, normal, low]
        assert inproc.api().get(f"/v1/jobs/{low}", headers=inproc.headers(client)).json()["priority"] == "low"

    def test_two_dispatchers_at_once_never_grant_one_slot_twice(self, inproc):
        from app.jobs.dispatch import dispatch

        client = inproc.client()
        for _ in range(10):
            inproc.create_job(client, model=CAPPED)
        start = threading.Barrier(2)
        results: list[dict] = []

        def run() -> None:
            start.wait()
            results.append(dispatch())

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(r["granted"] for r in results) == 2


WAITING_LOCKS = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"


class TestFirstThrottle:
    def test_two_workers_throttled_at_once_on_a_model_nothing_was_learned_for_both_record_it(self, inproc):
        """Two 429s for one model, before any limit row exists: the second worker's insert
        waited on the first's and, once it committed, failed as a duplicate key, leaving its
        job in `submitting` to be judged lost (`upstream_submit_unknown`) for a 429."""
        import psycopg

        from app.core.clock import utcnow
        from app.core.db import session_scope
        from app.jobs.dispatch import throttled
        from app.jobs.models import UpstreamLimit

        outcome: list[object] = []
        with session_scope() as first:
            throttled(first, CAPPED, utcnow())  # inserted, not yet committed

            def second() -> None:
                try:
                    with session_scope() as session:
                        outcome.append(throttled(session, CAPPED, utcnow()))
                except Exception as exc:  # the bug: a duplicate key
                    outcome.append(exc)

            thread = threading.Thread(target=second)
            thread.start()
            url = first.get_bind().url.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(url, autocommit=True) as watch:
                wait_for(lambda: watch.execute(WAITING_LOCKS).fetchone()[0] > 0,
                         timeout=20, message="the second worker to wait on the first's row")
        thread.join(timeout=20)
        assert outcome == [1.0], outcome
        with session_scope() as session:
            assert session.get(UpstreamLimit, CAPPED).concurrency == 1.0


def granted_ids(inproc, client) -> list[str]:
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.jobs.models import Job

    with session_scope() as session:
        return list(session.scalars(select(Job.id).where(Job.client_id == client.id, Job.slot_at.is_not(None))))


class TestAdaptiveConcurrency:
    def test_a_429_halves_the_models_concurrency_and_successes_win_it_back(self, inproc, monkeypatch):
        from app.core.db import session_scope
        from app.jobs.models import UpstreamLimit

        SoraScript(inproc.upstream, polls=[{"status": "in_progress"}])
        client = inproc.client()
        running = [inproc.create_job(client) for _ in range(4)]
        for job_id in running:
            inproc.submit(job_id)
        throttle = [True]

        def create(req, match):
            if throttle[0]:
                raise UpstreamError("busy", status=429, retryable=True, retry_after=5)
            return {"id": "video_late", "status": "queued"}

        inproc.upstream.route("POST", r"/v1/videos", create)
        waiting = inproc.create_job(client)
        assert inproc.submit(waiting) == "throttled"
        with session_scope() as session:
            assert session.get(UpstreamLimit, "sora-2").concurrency == 2  # 4 in flight, halved
        assert inproc.dispatch()["granted"] == 0  # 4 in flight > 2: it waits, it does not fail

        throttle[0] = False
        inproc.clock.advance(6)
        for job_id in running[:3]:
            with_slot_freed(inproc, job_id)
        assert inproc.dispatch()["granted"] == 1
        assert inproc.submit(waiting) == "submitted"
        with session_scope() as session:
            assert session.get(UpstreamLimit, "sora-2").concurrency == 2.5  # + 1/2
        assert inproc.job(waiting).status == "running"


class TestQuietRounds:
    def test_a_round_with_nothing_waiting_is_one_query_and_takes_no_lock(self, inproc, monkeypatch):
        from app.jobs import dispatch

        monkeypatch.setattr(dispatch, "QUIET_GAUGES_EVERY", 3600)
        SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": 5}])
        job_id = inproc.create_job(inproc.client())
        inproc.dispatch()
        inproc.submit(job_id)  # running: it holds a slot, and nothing waits for one
        with inproc.statements() as sent:
            assert inproc.dispatch() == {"granted": 0}
        assert len(sent) == 1, sent
        assert "advisory" not in sent[0]

        waiting = inproc.create_job(inproc.client("other"))
        assert inproc.dispatch()["granted"] == 1  # a job waiting is seen by the next round
        assert granted(inproc)[-1] == waiting

    def test_the_in_flight_gauge_reads_zero_once_the_last_task_ends(self, inproc, monkeypatch):
        from prometheus_client import REGISTRY

        from app.jobs import dispatch

        def in_flight() -> float | None:
            return REGISTRY.get_sample_value("cometjobs_upstream_in_flight", {"model": CAPPED})

        monkeypatch.setattr(dispatch, "QUIET_GAUGES_EVERY", 0)  # every quiet round refreshes the gauges
        SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": 5}])
        job_id = inproc.create_job(inproc.client(), model=CAPPED)
        inproc.dispatch()
        inproc.submit(job_id)
        inproc.dispatch()
        assert in_flight() == 1

        inproc.upstream.route("GET", r"/v1/videos/[^/]+", {"status": "completed", "progress": 100})
        inproc.clock.now = inproc.schedule(job_id).due_at
        inproc.poll()  # finished upstream: collecting holds no slot
        inproc.dispatch()
        assert in_flight() == 0
