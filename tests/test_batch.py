"""POST /v1/jobs/batch: the shape is all or nothing, each item is judged on its own,
and every item's Idempotency-Key makes a resent batch safe."""

from __future__ import annotations

import pytest

from app.core.db import session_scope
from app.jobs.models import Job

GOOD = {"model": "sora-2", "input": {"prompt": "a paper boat"}}


def jobs_in_db() -> int:
    from sqlalchemy import func, select

    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.fixture
def caller(api, make_client):
    return make_client()


class TestPerItemResults:
    def test_good_items_are_created_and_bad_ones_carry_their_problem(self, api, caller):
        items = [
            {**GOOD, "idempotency_key": "a"},
            {"model": "no-such-model", "input": {"prompt": "x"}, "idempotency_key": "b"},
            {"model": "sora-2", "input": {}, "idempotency_key": "c"},
            {**GOOD, "input": {"prompt": "another"}, "idempotency_key": "d"},
        ]
        response = api.post("/v1/jobs/batch", json={"jobs": items}, headers=caller.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [r["status"] for r in body["data"]] == [202, 422, 422, 202]
        assert (body["created"], body["replayed"], body["failed"]) == (2, 0, 2)
        assert body["data"][1]["error"]["code"] == "validation_error"
        assert body["data"][1]["error"]["errors"][0]["code"] == "unknown_model"
        assert body["data"][0]["job"]["status"] == "queued"
        assert jobs_in_db() == 2

    def test_resending_the_batch_replays_the_accepted_and_retries_the_rest(self, api, caller):
        items = [{**GOOD, "idempotency_key": "k1"}, {"model": "nope", "input": {}, "idempotency_key": "k2"}]
        first = api.post("/v1/jobs/batch", json={"jobs": items}, headers=caller.headers).json()
        items[1] = {**GOOD, "input": {"prompt": "fixed"}, "idempotency_key": "k2"}
        second = api.post("/v1/jobs/batch", json={"jobs": items}, headers=caller.headers).json()
        assert [r["status"] for r in second["data"]] == [200, 202]
        assert second["data"][0]["job"]["id"] == first["data"][0]["job"]["id"]
        # The same key names the same job through POST /v1/jobs.
        single = api.post("/v1/jobs", json=GOOD, headers={**caller.headers, "Idempotency-Key": "k1"})
        assert single.headers["Idempotent-Replayed"] == "true"
        assert single.json()["id"] == first["data"][0]["job"]["id"]

    def test_quotas_apply_per_item_and_a_refused_item_is_not_charged(self, api, make_client):
        caller = make_client("tight", max_queued=2)
        items = [{**GOOD, "input": {"prompt": f"p{i}"}, "idempotency_key": f"q{i}"} for i in range(3)]
        body = api.post("/v1/jobs/batch", json={"jobs": items}, headers=caller.headers).json()
        assert [r["status"] for r in body["data"]] == [202, 202, 429]
        assert body["data"][2]["error"]["code"] == "quota_exceeded"
        assert body["data"][2]["retry_after"] >= 1
        assert jobs_in_db() == 2


class TestAllOrNothingShape:
    @pytest.mark.parametrize("payload", [
        {"jobs": []},
        {"jobs": [{**GOOD, "idempotency_key": str(i)} for i in range(101)]},
        {"jobs": [{**GOOD, "idempotency_key": "x"}, GOOD]},
        {"jobs": [{**GOOD, "idempotency_key": ""}]},
        {"jobs": [{**GOOD, "idempotency_key": "x", "extra": 1}]},
    ])
    def test_a_malformed_batch_is_422_and_creates_nothing(self, api, caller, payload):
        response = api.post("/v1/jobs/batch", json=payload, headers=caller.headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert jobs_in_db() == 0

    def test_a_nul_anywhere_is_400(self, api, caller):
        raw = b'{"jobs": [{"model": "sora-2", "input": {"prompt": "a\\u0000"}, "idempotency_key": "n"}]}'
        response = api.post("/v1/jobs/batch", content=raw,
                            headers={**caller.headers, "content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["code"] == "unstorable_input"

    def test_an_item_over_budget_takes_back_its_charge(self, api, make_client):
        # sora-2-capped costs 0.5 (tests/models.toml): a 1.2 budget takes two, refuses the
        # third, and the refused one's charge is undone, so a cheaper fourth still fits.
        caller = make_client("budget", daily_budget=1.2)
        items = [{"model": "sora-2-capped", "input": {"prompt": f"p{i}"}, "idempotency_key": f"b{i}"}
                 for i in range(3)]
        items.append({**GOOD, "idempotency_key": "free"})
        body = api.post("/v1/jobs/batch", json={"jobs": items}, headers=caller.headers).json()
        assert [r["status"] for r in body["data"]] == [202, 202, 429, 202]
        limits = api.get("/v1/client", headers=caller.headers).json()["limits"]
        assert limits["spent_today"] == pytest.approx(1.0)


def test_a_405_on_the_batch_path_names_only_its_own_method(api, caller):
    response = api.request("OPTIONS", "/v1/jobs/batch", headers=caller.headers)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


class TestPublishing:
    @pytest.fixture
    def fifo(self, monkeypatch):
        """FIFO dispatch: each accepted job is published at once (fair dispatch leaves it to the dispatcher)."""
        from app.core.settings import get_settings

        monkeypatch.setenv("COMETJOBS_DISPATCH", "fifo")
        get_settings.cache_clear()
        yield
        monkeypatch.undo()
        get_settings.cache_clear()

    def test_accepted_items_are_published_after_commit_and_refused_ones_never(self, inproc, fifo):
        from app.core.tasks import TaskName
        from app.jobs import service
        from app.jobs.schemas import JobBatchItem

        caller = inproc.client()
        items = [JobBatchItem(model="sora-2", input={"prompt": "a"}, idempotency_key="1"),
                 JobBatchItem(model="nope", input={"prompt": "b"}, idempotency_key="2"),
                 JobBatchItem(model="sora-2", input={"prompt": "c"}, idempotency_key="3")]
        with session_scope() as session:
            outcomes = service.create_batch(session, caller.model, items)
            assert inproc.publisher.of(TaskName.SUBMIT_JOB) == []  # nothing before the commit
        accepted = [o.accepted.job.id for o in outcomes if o.accepted]
        assert len(accepted) == 2 and outcomes[1].error is not None
        assert inproc.publisher.of(TaskName.SUBMIT_JOB) == accepted

    def test_a_batch_rolled_back_publishes_nothing(self, inproc, fifo):
        from app.core.db import get_sessionmaker
        from app.core.tasks import TaskName
        from app.jobs import service
        from app.jobs.schemas import JobBatchItem

        caller = inproc.client()
        session = get_sessionmaker()()
        try:
            service.create_batch(session, caller.model, [
                JobBatchItem(model="sora-2", input={"prompt": "a"}, idempotency_key="1")])
            session.rollback()
        finally:
            session.close()
        assert inproc.publisher.of(TaskName.SUBMIT_JOB) == []
