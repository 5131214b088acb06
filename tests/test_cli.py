"""The `cometjobs` command's management subcommands, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app.clients.service import authenticate
from app.core.db import session_scope
from tests.support.waiting import wait_for


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cometjobs", *args], capture_output=True, text=True, timeout=60)


def test_clients_create_prints_one_json_object_with_a_working_key(clean):
    result = run("clients", "create", "billing", "--webhook-url", "https://billing.example/hooks")
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert made["name"] == "billing"
    assert made["id"].startswith("cli_")
    assert made["webhook_secret"].startswith("whsec_")
    assert made["webhook_url"] == "https://billing.example/hooks"
    with session_scope() as session:
        client = authenticate(session, made["api_key"])
        assert client is not None and client.id == made["id"]
        assert client.api_key_hash != made["api_key"]


def test_rotate_secret_keeps_the_old_one_for_a_grace_period(clean):
    made = json.loads(run("clients", "create", "svc").stdout)
    rotated = json.loads(run("clients", "rotate-secret", made["id"], "--grace-seconds", "60").stdout)
    assert rotated["webhook_secret"].startswith("whsec_")
    assert rotated["webhook_secret"] != made["webhook_secret"]
    assert rotated["previous_secret_expires_at"]


def test_migrate_is_idempotent(database):
    first, second = run("migrate"), run("migrate")
    assert first.returncode == second.returncode == 0
    assert "latest migration" in second.stdout


class TestClientKeys:
    def test_list_prints_one_json_line_per_client_and_never_a_key_or_secret(self, clean):
        made = [json.loads(run("clients", "create", name, *extra).stdout)
                for name, extra in (("billing", ["--webhook-url", "https://billing.example/hooks"]),
                                    ("ops", ["--admin"]))]
        result = run("clients", "list")
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(r["name"], r["id"], r["admin"], r["revoked"], r["webhook_url"]) for r in rows] == [
            ("billing", made[0]["id"], False, None, "https://billing.example/hooks"),
            ("ops", made[1]["id"], True, None, None),
        ]
        assert all(r["created"] for r in rows)
        for secret in (m[k] for m in made for k in ("api_key", "webhook_secret")):
            assert secret not in result.stdout

    def test_revoke_stops_the_key_within_the_key_cache_and_rotate_key_restores_with_a_new_one(self, api):
        made = json.loads(run("clients", "create", "leaky").stdout)
        old = {"Authorization": f"Bearer {made['api_key']}"}
        assert api.get("/v1/client", headers=old).status_code == 200

        revoked = run("clients", "revoke", "leaky")
        assert revoked.returncode == 0, revoked.stderr
        assert json.loads(revoked.stdout)["revoked"]
        # Another process (this CLI) revoked it: an API process that saw the key within
        # COMETJOBS_AUTH_CACHE_TTL (5 s) keeps trusting it until then, and no longer.
        answer = wait_for(lambda: (lambda a: a if a.status_code == 401 else None)(api.get("/v1/client", headers=old)),
                          timeout=15, message="the revoked key to be refused")
        assert answer.json()["code"] == "unauthorized"
        again = json.loads(run("clients", "revoke", made["id"]).stdout)
        assert again["already_revoked"] is True

        rotated = run("clients", "rotate-key", "leaky")
        assert rotated.returncode == 0, rotated.stderr
        out = json.loads(rotated.stdout)
        assert out["api_key"].startswith("cj_live_") and out["api_key"] != made["api_key"]
        assert out["revoked"] is None
        assert api.get("/v1/client", headers=old).status_code == 401
        assert api.get("/v1/client", headers={"Authorization": f"Bearer {out['api_key']}"}).status_code == 200
        listed = [json.loads(line) for line in run("clients", "list").stdout.splitlines()]
        assert out["api_key"] not in json.dumps(listed)

    def test_a_name_two_clients_share_must_be_given_by_id(self, clean):
        first = json.loads(run("clients", "create", "twin").stdout)
        json.loads(run("clients", "create", "twin").stdout)
        by_name = run("clients", "revoke", "twin")
        assert by_name.returncode != 0 and first["id"] in by_name.stderr
        assert run("clients", "revoke", first["id"]).returncode == 0
        missing = run("clients", "rotate-key", "nobody")
        assert missing.returncode != 0 and "no client" in missing.stderr


class TestSettingsErrors:
    """In production only the roles that use a secret demand it, and a bad setting is one
    line naming it (exit 2), never a traceback."""

    @pytest.fixture
    def prod(self, monkeypatch, database):  # type: ignore[no-untyped-def]
        from app.core.settings import get_settings

        monkeypatch.setenv("COMETJOBS_ENV", "prod")
        monkeypatch.delenv("COMETJOBS_COMETAPI_KEY", raising=False)
        monkeypatch.delenv("COMETJOBS_CONSOLE_SECRET", raising=False)
        get_settings.cache_clear()
        yield monkeypatch
        get_settings.cache_clear()

    def test_migrate_and_worker_health_run_without_the_cometapi_key(self, prod):
        from cometjobs.cli import main

        migrated = CliRunner().invoke(main, ["migrate"])
        assert (migrated.exit_code, migrated.output.strip()) == (0, "database is at the latest migration")
        probe = CliRunner().invoke(main, ["worker-health", "--timeout", "0.2", "--node", "nobody@%h"])
        assert probe.exit_code == 1 and json.loads(probe.stdout)["healthy"] is False
        assert "COMETAPI_KEY" not in probe.output

    def test_the_api_without_the_key_is_one_line(self, prod):
        from cometjobs.cli import main

        result = CliRunner().invoke(main, ["api"])
        assert result.exit_code == 2
        assert result.stderr == "cometjobs: invalid setting: COMETJOBS_COMETAPI_KEY must be a real key when " \
            "COMETJOBS_ENV=prod\n"

    def test_a_malformed_value_is_one_line_naming_the_variable(self, prod):
        from cometjobs.cli import main

        prod.setenv("COMETJOBS_WEBHOOK_TIMEOUT", "ten seconds")
        result = CliRunner().invoke(main, ["migrate"])
        assert result.exit_code == 2
        [line] = result.stderr.splitlines()
        assert line.startswith("cometjobs: invalid setting: COMETJOBS_WEBHOOK_TIMEOUT: ")
        assert line.endswith("(got 'ten seconds')") and "Traceback" not in result.output


class TestDevFirstRun:
    def test_a_busy_port_is_a_clear_error_before_anything_starts(self, tmp_path, monkeypatch):
        import socket

        from cometjobs.cli import main

        monkeypatch.chdir(tmp_path)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = CliRunner().invoke(main, ["dev", "--port", str(port)])
        assert result.exit_code == 1
        assert result.stderr.startswith(f"cometjobs dev: the API port {port} on 127.0.0.1 is in use")
        assert f"make dev PORT={port + 1000}" in result.stderr
        assert "running" not in result.stdout and not (tmp_path / ".cometjobs" / "cometjobs.db").exists()

    def test_the_banner_fits_100_columns_has_no_borders_and_says_where_the_key_is(self, tmp_path):
        from cometjobs.dev import ready_lines

        saved = tmp_path / "dev-client.json"
        client = {"api_key": "cj_live_" + "k" * 43, "webhook_secret": "whsec_" + "s" * 44}
        lines = ready_lines("http://127.0.0.1:18000", client, saved)
        assert all(len(line) <= 100 for line in lines if str(saved) not in line)
        assert not any(line.startswith(("|", "+")) or line.endswith("|") for line in lines)
        assert f"Saved in:       {saved}" in lines and f"  export KEY={client['api_key']}" in lines
        curl = "\n".join(line for line in lines if line.startswith(("  curl", "    -")))
        assert curl.endswith("'") and 'Bearer $KEY' in curl

    def test_a_dev_job_is_seen_running_with_progress_by_at_least_two_polls_of_every_model(self):
        from app.providers.registry import load_catalog
        from cometjobs.cli import dev
        from cometjobs.dev import DEV_JOB_SECONDS
        from emulator.state import Task

        assert next(p for p in dev.params if p.name == "emulator_job_seconds").default == DEV_JOB_SECONDS
        for spec in load_catalog().values():
            task = Task(id="t", family=spec.family, model=spec.id, prompt="p", created=0.0,
                        job_seconds=DEV_JOB_SECONDS)
            polls = [spec.poll_first_delay, spec.poll_first_delay + spec.poll_interval]
            seen = [task.phase(now=at) for at in polls]
            assert all(state == "running" for state, _ in seen), (spec.id, seen)
            assert 0 < seen[0][1] < seen[1][1] < 100, (spec.id, seen)
