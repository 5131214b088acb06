"""The ops console over HTTP (the ASGI app on the real test database): who may sign in,
what the session cookie is, CSRF on every POST, the filters of the jobs list, and the
settings that guard it. The pages in a real browser: tests/test_console_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(api: Any, key: str, next_url: str = "/console") -> Any:
    form = api.get("/console/login")
    assert form.status_code == 200
    token = TOKEN.search(form.text)[1]
    return api.post("/console/login", data={"api_key": key, "csrf_token": token, "next": next_url},
                    follow_redirects=False)


def csrf(api: Any, page: str = "/console") -> str:
    return TOKEN.search(api.get(page).text)[1]


@pytest.fixture
def admin(make_client):  # type: ignore[no-untyped-def]
    return make_client("ops", is_admin=True)


@pytest.fixture
def signed_in(api, admin):  # type: ignore[no-untyped-def]
    assert sign_in(api, admin["api_key"]).status_code == 303
    return api


def job_for(api: Any, client: Any, **fields: Any) -> str:
    body = {"model": "sora-2", "input": {"prompt": "a lighthouse at dawn"}, **fields}
    response = api.post("/v1/jobs", headers=client.headers, json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


class TestSignIn:
    def test_pages_redirect_to_the_sign_in_form_and_json_is_401(self, api, admin):
        for page in ("/console", "/console/jobs?status=failed", "/console/clients", "/console/jobs/job_x"):
            response = api.get(page, follow_redirects=False)
            assert response.status_code == 303, page
            assert response.headers["location"].startswith("/console/login?next=")
        assert api.get("/console/overview.json").status_code == 401

    def test_an_admin_key_signs_in_with_a_strict_httponly_expiring_cookie(self, api, admin):
        response = sign_in(api, admin["api_key"], "/console/jobs?status=failed")
        assert (response.status_code, response.headers["location"]) == (303, "/console/jobs?status=failed")
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("cometjobs_console="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "max-age", "path"} <= attributes
        assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
        assert "secure" not in attributes  # PUBLIC_BASE_URL is http here
        assert admin["api_key"] not in cookie
        page = api.get("/console")
        assert page.status_code == 200 and "Overview" in page.text
        for header in ("content-security-policy", "x-frame-options"):
            assert header in page.headers
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"

    def test_a_non_admin_a_revoked_or_a_wrong_key_is_refused(self, api, make_client):
        plain = make_client("billing")
        revoked = make_client("old-ops", is_admin=True)
        from app.clients.service import find, revoke
        from app.core.db import session_scope

        with session_scope() as session:
            revoke(session, find(session, revoked["id"]))
        for key in (plain["api_key"], revoked["api_key"], "cj_live_not-a-key"):
            response = sign_in(api, key)
            assert response.status_code == 401
            assert "not a valid admin API key" in response.text
            assert not any(c.startswith("cometjobs_console=") for c in response.headers.get_list("set-cookie"))

    def test_the_sign_in_form_itself_needs_its_token(self, api, admin):
        response = api.post("/console/login", data={"api_key": admin["api_key"]}, follow_redirects=False)
        assert response.status_code == 403

    def test_only_console_pages_are_followed_after_sign_in(self, api, admin):
        for target in ("https://evil.example/", "//evil.example/", "/v1/jobs"):
            api.cookies.clear()
            assert sign_in(api, admin["api_key"], target).headers["location"] == "/console"

    def test_rotating_or_revoking_the_key_ends_its_sessions(self, signed_in, admin):
        from app.clients.service import find, revoke, rotate_api_key
        from app.core.db import session_scope

        assert signed_in.get("/console/overview.json").status_code == 200
        with session_scope() as session:
            new_key = rotate_api_key(session, find(session, admin["id"]))
        assert signed_in.get("/console/overview.json").status_code == 401
        signed_in.cookies.clear()
        assert sign_in(signed_in, new_key).status_code == 303
        assert signed_in.get("/console/overview.json").status_code == 200
        with session_scope() as session:
            revoke(session, find(session, admin["id"]))
        assert signed_in.get("/console/overview.json").status_code == 401

    def test_a_tampered_cookie_is_no_session(self, signed_in):
        value = signed_in.cookies.get("cometjobs_console")
        signed_in.cookies.set("cometjobs_console", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"),
                              path="/console")
        assert signed_in.get("/console/overview.json").status_code == 401

    def test_sign_out_needs_the_token_and_ends_the_session(self, signed_in):
        assert signed_in.post("/console/logout", follow_redirects=False).status_code == 403
        token = csrf(signed_in)
        response = signed_in.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
        assert response.status_code == 303
        assert signed_in.get("/console/overview.json").status_code == 401


class TestActions:
    def test_cancel_without_the_sessions_token_is_refused_and_changes_nothing(self, signed_in, make_client):
        client = make_client("billing")
        job_id = job_for(signed_in, client)
        for data in ({}, {"csrf_token": "forged"}):
            refused = signed_in.post(f"/console/jobs/{job_id}/cancel", data=data, follow_redirects=False)
            assert refused.status_code == 403 and "Nothing was changed" in refused.text
        assert signed_in.get(f"/v1/jobs/{job_id}", headers=client.headers).json()["status"] == "queued"

    def test_cancel_goes_through_the_jobs_service(self, signed_in, make_client):
        client = make_client("billing")
        job_id = job_for(signed_in, client)
        token = csrf(signed_in, f"/console/jobs/{job_id}")
        done = signed_in.post(f"/console/jobs/{job_id}/cancel", data={"csrf_token": token}, follow_redirects=False)
        assert (done.status_code, done.headers["location"]) == (303, f"/console/jobs/{job_id}?notice=canceled")
        job = signed_in.get(f"/v1/jobs/{job_id}", headers=client.headers).json()
        assert (job["status"], job["error"]["code"]) == ("canceled", "canceled")
        again = signed_in.post(f"/console/jobs/{job_id}/cancel", data={"csrf_token": token}, follow_redirects=False)
        assert again.headers["location"].endswith("notice=job_terminal")
        assert "already finished" in signed_in.get(again.headers["location"]).text

    def test_redeliver_of_a_pending_delivery_says_it_is_pending(self, signed_in, make_client):
        client = make_client("billing", webhook_url="http://127.0.0.1:9/hook")
        job_id = job_for(signed_in, client)
        token = csrf(signed_in, f"/console/jobs/{job_id}")
        signed_in.post(f"/console/jobs/{job_id}/cancel", data={"csrf_token": token})
        [delivery] = signed_in.get(f"/v1/jobs/{job_id}/deliveries", headers=client.headers).json()["data"]
        assert delivery["status"] == "pending"
        answer = signed_in.post(f"/console/jobs/{job_id}/deliveries/{delivery['id']}/redeliver",
                                data={"csrf_token": token}, follow_redirects=False)
        assert answer.headers["location"].endswith("notice=delivery_pending")
        other = signed_in.post(f"/console/jobs/job_other/deliveries/{delivery['id']}/redeliver",
                               data={"csrf_token": token}, follow_redirects=False)
        assert other.headers["location"].endswith("notice=not_found")


class TestJobsList:
    @pytest.fixture
    def jobs(self, signed_in, make_client) -> dict[str, str]:
        billing, search = make_client("billing"), make_client("search")
        made = {
            "billing-1": job_for(signed_in, billing, metadata={"order": "ord-1234"}),
            "billing-pro": job_for(signed_in, billing, model="sora-2-pro"),
            "search-1": job_for(signed_in, search, metadata={"query": "lighthouse"}),
        }
        token = csrf(signed_in)
        signed_in.post(f"/console/jobs/{made['search-1']}/cancel", data={"csrf_token": token})
        return made

    @staticmethod
    def listed(api: Any, **params: str) -> list[str]:
        page = api.get("/console/jobs", params=params)
        assert page.status_code == 200
        return re.findall(r'data-job-id="(job_[0-9A-Z]+)"', page.text)

    def test_filters_by_client_model_status_metadata_id_and_time(self, signed_in, jobs):
        every = self.listed(signed_in)
        assert every == sorted(jobs.values(), reverse=True)  # newest first
        assert set(self.listed(signed_in, client="billing")) == {jobs["billing-1"], jobs["billing-pro"]}
        assert self.listed(signed_in, model="sora-2-pro") == [jobs["billing-pro"]]
        assert self.listed(signed_in, status="canceled") == [jobs["search-1"]]
        assert self.listed(signed_in, code="canceled") == [jobs["search-1"]]
        assert self.listed(signed_in, q="ord-1234") == [jobs["billing-1"]]
        assert self.listed(signed_in, q=jobs["billing-pro"]) == [jobs["billing-pro"]]
        assert self.listed(signed_in, q="100%_") == []  # LIKE wildcards are literal
        assert self.listed(signed_in, since="2000-01-01T00:00", until="2001-01-01T00:00") == []
        assert len(self.listed(signed_in, since="2000-01-01T00:00")) == 3

    def test_bad_filters_are_reported_not_a_crash(self, signed_in, jobs):
        page = signed_in.get("/console/jobs", params={"status": "<b>nope</b>", "since": "yesterday"})
        assert page.status_code == 200
        assert "is not a job status" in page.text and "<b>nope</b>" not in page.text  # escaped
        assert "not a date and time" in page.text

    def test_overview_counts_jobs_and_failures(self, signed_in, jobs):
        data = signed_in.get("/console/overview.json").json()
        assert data["totals"]["queued"] == 2 and data["totals"]["canceled"] == 1
        assert data["jobs"]["sora-2-pro"] == {"queued": 1}
        assert set(data["queues"]) == {"submit", "poll", "collect", "webhooks", "maintenance"}
        assert data["oldest_queued_seconds"] >= 0

    def test_clients_page_lists_clients_but_never_keys(self, signed_in, make_client):
        made = make_client("billing", webhook_url="https://billing.example/hooks")
        page = signed_in.get("/console/clients")
        assert page.status_code == 200
        assert "billing" in page.text and "https://billing.example/hooks" in page.text
        assert made["api_key"] not in page.text and made["webhook_secret"] not in page.text


class TestSettings:
    @pytest.fixture
    def prod(self, monkeypatch) -> Iterator[None]:  # type: ignore[no-untyped-def]
        from app.core.settings import get_settings

        monkeypatch.setenv("COMETJOBS_ENV", "prod")
        get_settings.cache_clear()
        yield
        get_settings.cache_clear()

    @pytest.mark.parametrize("secret", [None, "changeme", "short-but-real"])
    def test_prod_refuses_a_missing_placeholder_or_short_console_secret(self, prod, monkeypatch, secret):
        from app.core.settings import Settings, SettingsError

        if secret is None:
            monkeypatch.delenv("COMETJOBS_CONSOLE_SECRET", raising=False)
        else:
            monkeypatch.setenv("COMETJOBS_CONSOLE_SECRET", secret)
        with pytest.raises(SettingsError, match="COMETJOBS_CONSOLE_SECRET"):
            Settings().require("console_secret")

    def test_prod_takes_a_real_one(self, prod, monkeypatch):
        from app.core.settings import Settings

        monkeypatch.setenv("COMETJOBS_CONSOLE_SECRET", "x" * 8 + "a-real-console-secret-of-32-chars")
        assert Settings().console_signing_key.startswith("xxxxxxxx")

    def test_an_https_base_url_makes_the_cookie_secure(self, api, admin, monkeypatch):
        from fastapi.testclient import TestClient

        from app.core.settings import get_settings

        monkeypatch.setenv("COMETJOBS_PUBLIC_BASE_URL", "https://jobs.example.com")
        get_settings.cache_clear()
        try:
            # A browser keeps a Secure cookie for https only: so does this client.
            response = sign_in(TestClient(api.app, base_url="https://testserver"), admin["api_key"])
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("cometjobs_console="))
        assert "secure" in {part.strip().lower() for part in cookie.split(";")}
