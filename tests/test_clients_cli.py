"""`cometjobs clients create|update|list` with a client's share and quotas, in-process."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cometjobs.cli import main


def invoke(*args: str) -> dict | list[dict]:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return lines[0] if len(lines) == 1 else lines


def test_limits_are_set_at_creation_changed_later_and_listed(own_db):
    made = invoke("clients", "create", "batch-svc", "--weight", "3", "--max-queued", "500", "--rate", "2/s",
                  "--daily-budget", "25")
    assert (made["weight"], made["max_queued"], made["rate_per_minute"], made["daily_budget"]) == (3, 500, 120.0, 25.0)
    assert made["api_key"].startswith("cj_live_")

    updated = invoke("clients", "update", "batch-svc", "--max-queued", "0", "--rate", "30/min", "--burst", "5")
    assert (updated["weight"], updated["max_queued"], updated["rate_per_minute"], updated["rate_burst"]) == (
        3, None, 30.0, 5)

    invoke("clients", "create", "other")
    listed = invoke("clients", "list")
    assert [c["name"] for c in listed] == ["batch-svc", "other"]
    assert all("api_key" not in c and "webhook_secret" not in c for c in listed)


def test_a_rate_that_is_not_a_rate_is_refused(own_db):
    result = CliRunner().invoke(main, ["clients", "create", "x", "--rate", "fast"])
    assert result.exit_code == 2 and "N/min" in result.output


def test_updating_a_client_that_does_not_exist_says_so(own_db):
    result = CliRunner().invoke(main, ["clients", "update", "ghost", "--weight", "2"])
    assert result.exit_code == 1 and "no client named 'ghost'" in result.output
