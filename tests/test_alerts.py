"""The alert rules in deploy/prometheus/: valid for Prometheus, loaded by its config,
unit-tested by promtool (each alert fires on its failure and stays quiet on the look-alike),
and built only on series the application exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_ops_compose import exported_series

ROOT = Path(__file__).parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package has it; .ci/run installs it)")
    return binary


def alerts() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


class TestPromtool:
    def test_prometheus_config_and_its_rule_files_are_valid(self, promtool):
        result = subprocess.run([promtool, "check", "config", str(PROMETHEUS / "prometheus.yml")],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        # The config loads every rule file, by a path relative to itself (as mounted in compose).
        for path in RULES:
            assert str(path.relative_to(ROOT)) in result.stdout, result.stdout

    def test_alert_unit_tests_pass(self, promtool):
        assert RULE_TESTS
        result = subprocess.run([promtool, "test", "rules", *map(str, RULE_TESTS)],
                                capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


class TestRules:
    def test_every_alert_has_a_unit_test_that_sees_it_fire(self):
        tested = {
            case["alertname"]
            for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
            for case in test.get("alert_rule_test", []) if case.get("exp_alerts")
        }
        names = {rule["alert"] for rule in alerts()}
        assert names and names <= tested, names - tested

    def test_every_alert_has_a_severity_and_a_summary(self):
        for rule in alerts():
            assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]

    def test_rules_use_only_series_the_application_exports(self, database):
        used = {name for rule in alerts() for name in re.findall(r"\bcometjobs_[a-z_]+", rule["expr"])}
        exported = exported_series(database)
        assert used and used <= exported, used - exported

    def test_the_issues_failures_each_have_an_alert(self):
        exprs = {rule["alert"]: rule["expr"] for rule in alerts()}
        wanted = {
            "ticks stopped": "cometjobs_tick_last_success_timestamp_seconds",
            "database unreachable": "cometjobs_database_scrape_success",
            "broker unreachable": "cometjobs_broker_scrape_success",
            "oldest queued job": 'cometjobs_jobs_oldest_age_seconds{state="queued"}',
            "poll lag": "cometjobs_poll_lag_seconds_bucket",
            "failures by error source": "sum by (error_source)",
            "upstream errors by family": "sum by (family)",
            "dead deliveries": 'outcome="dead"',
            "webhook lag of live receivers": "cometjobs_webhook_oldest_due_age_seconds",
            "storage errors": "cometjobs_storage_errors_total",
        }
        for failure, needle in wanted.items():
            assert any(needle in expr for expr in exprs.values()), failure
        assert not any("cometjobs_webhook_oldest_pending_age_seconds" in expr for expr in exprs.values()), (
            "one dead receiver would page")
