"""A client's quotas at the front door: jobs queued, submissions per minute (a token
bucket, with RateLimit fields), and a daily budget; each refusal a 429 problem with a
stable code and Retry-After, and nothing stored."""

from __future__ import annotations

import uuid

import pytest

CAPPED = "sora-2-capped"  # tests/models.toml: price 0.5


def post(api, client, **fields):
    body = {"model": fields.pop("model", "sora-2"), "input": {"prompt": "a paper boat"}, **fields}
    return api.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {client.api_key}"})


def count_jobs(inproc) -> int:
    from sqlalchemy import func, select

    from app.core.db import session_scope
    from app.jobs.models import Job

    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.fixture
def api(inproc, monkeypatch):
    # Buckets are per client id; ids are fresh per test, so buckets never leak across tests.
    return inproc.api()


class TestMaxQueued:
    def test_a_client_at_its_queue_limit_gets_429_quota_exceeded(self, inproc, api):
        client = inproc.client(max_queued=2)
        assert [post(api, client).status_code for _ in range(2)] == [202, 202]
        refused = post(api, client)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "quota_exceeded"
        assert int(refused.headers["Retry-After"]) >= 1
        assert count_jobs(inproc) == 2

    def test_the_limit_counts_only_jobs_still_waiting(self, inproc, api):
        client = inproc.client(max_queued=1)
        first = post(api, client).json()["id"]
        inproc.submit(first)  # it has started: it no longer counts
        assert post(api, client).status_code == 202


class TestRate:
    def test_a_burst_beyond_the_bucket_is_rate_limited_with_its_fields(self, inproc, api):
        client = inproc.client(rate_per_minute=6, rate_burst=2)
        answers = [post(api, client) for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert answers[0].headers["RateLimit-Policy"] == '"submit";q=6;w=60'
        assert answers[1].headers["RateLimit"].startswith('"submit";r=0;')
        refused = answers[2]
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 10  # one token per 10 s
        assert refused.headers["RateLimit"].startswith('"submit";r=0;t=')
        assert count_jobs(inproc) == 2

    def test_a_client_without_a_rate_gets_no_fields(self, inproc, api):
        answer = post(api, inproc.client())
        assert answer.status_code == 202 and "RateLimit" not in answer.headers


class TestBudget:
    def test_a_job_that_would_pass_the_daily_budget_is_refused_and_not_charged(self, inproc, api):
        client = inproc.client(daily_budget=1.0)
        assert [post(api, client, model=CAPPED).status_code for _ in range(2)] == [202, 202]
        refused = post(api, client, model=CAPPED)
        assert (refused.status_code, refused.json()["code"]) == (429, "budget_exhausted")
        assert 0 < int(refused.headers["Retry-After"]) <= 86400
        limits = api.get("/v1/client", headers={"Authorization": f"Bearer {client.api_key}"}).json()["limits"]
        assert limits["spent_today"] == 1.0 and limits["daily_budget"] == 1.0
        assert post(api, client).status_code == 202  # sora-2 has no price: free


class TestClientView:
    def test_limits_and_usage_are_shown(self, inproc, api):
        client = inproc.client(f"svc-{uuid.uuid4().hex[:6]}", weight=3, max_queued=10, rate_per_minute=120)
        post(api, client)
        limits = api.get("/v1/client", headers={"Authorization": f"Bearer {client.api_key}"}).json()["limits"]
        assert limits["weight"] == 3 and limits["max_queued"] == 10 and limits["queued"] == 1
        assert limits["rate_per_minute"] == 120 and limits["rate_burst"] == 20 and limits["rate_remaining"] == 19
        assert limits["in_flight"] == 0 and limits["daily_budget"] is None

    def test_in_flight_counts_the_clients_own_slots_only(self, inproc, api):
        mine, other = inproc.client(f"a-{uuid.uuid4().hex[:6]}"), inproc.client(f"b-{uuid.uuid4().hex[:6]}")
        post(api, mine)
        post(api, other)
        assert inproc.dispatch()["granted"] == 2  # both hold a slot now
        for client in (mine, other):
            limits = api.get("/v1/client", headers={"Authorization": f"Bearer {client.api_key}"}).json()["limits"]
            assert limits["in_flight"] == 1  # not the other client's too
