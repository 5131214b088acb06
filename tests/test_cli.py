"""The `cometjobs` command's management subcommands, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

from app.clients.service import authenticate
from app.core.db import session_scope


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
