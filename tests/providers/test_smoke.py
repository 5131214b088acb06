"""`cometjobs smoke`: it refuses to spend money unless told to with a real key, and its
table, rendered from a run against the emulator (the hidden --emulator switch: the
same pipeline, never CometAPI itself)."""

from __future__ import annotations

import os
import subprocess

import pytest

from app.core.settings import Settings
from cometjobs.smoke import SMOKE_JOBS, Refused, Row, check_allowed, families, table
from tests.support.procs import cometjobs


def smoke(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cometjobs("smoke", *args), env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)


def settings(**values: str | None) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestRefusals:
    def test_without_live_it_refuses(self):
        with pytest.raises(Refused, match="--live"):
            check_allowed(settings(cometapi_key="sk-real-looking-key"), live=False, emulator=False)

    @pytest.mark.parametrize("key", [None, "", "changeme", "sk-xxx"])
    def test_a_missing_or_placeholder_key_is_refused(self, key):
        with pytest.raises(Refused, match="real CometAPI key"):
            check_allowed(settings(cometapi_key=key), live=True, emulator=False)

    def test_the_emulator_switch_never_reaches_cometapi(self):
        with pytest.raises(Refused, match="CometAPI's"):
            check_allowed(settings(cometapi_key="k", cometapi_base_url="https://api.cometapi.com/"),
                          live=False, emulator=True)

    def test_unknown_family_is_refused(self):
        with pytest.raises(Refused, match="nope"):
            families(["nope"])
        assert families([]) == sorted(SMOKE_JOBS)

    def test_the_command_exits_2_and_says_why(self):
        result = smoke(COMETJOBS_COMETAPI_KEY="changeme")
        assert result.returncode == 2
        assert "--live" in result.stderr and result.stdout == ""
        result = smoke("--live", COMETJOBS_COMETAPI_KEY="changeme")
        assert (result.returncode, "real CometAPI key" in result.stderr) == (2, True)


class TestJobs:
    def test_every_family_has_a_job_its_model_accepts(self):
        from app.providers.registry import adapter_for, load_catalog
        from tests.providers.video_support import no_records

        catalog = load_catalog()
        assert set(SMOKE_JOBS) == {spec.family for spec in catalog.values()}
        for family, (model, job_input) in SMOKE_JOBS.items():
            spec = catalog[model]
            assert spec.family == family
            adapter_for(spec).validate(spec, job_input, no_records())

    def test_the_table_lines_up(self):
        rows = [Row("bria", "bria-generate", "succeeded (1 artifact)", 2.5, "27c39b06"),
                Row("kling", "kling-image", "failed: generation_failed risk control", 41.0, "8781 / req-1")]
        lines = table(rows).splitlines()
        assert lines[0].split() == ["family", "model", "outcome", "seconds", "upstream", "id", "/", "request", "id"]
        assert set(lines[1]) == {"-", " "}
        assert lines[2].index("succeeded") == lines[3].index("failed") == lines[0].index("outcome")


class TestAgainstTheEmulator:
    # own_db: the smoke run drives its jobs itself; the session's shared worker and scheduler
    # (on the shared database) would otherwise race it for them, with their own settings.
    def test_a_run_prints_one_row_per_family(self, own_db, emulator):
        emulator.configure(job_seconds=0.5)
        result = smoke("--emulator", "--family", "bria", "--family", "kling", "--family", "suno", "--timeout", "120")
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.strip().splitlines()
        assert lines[0].startswith("family") and len(lines) == 2 + 3
        rows = {line.split()[0]: line for line in lines[2:]}
        assert set(rows) == {"bria", "kling", "suno"}
        assert all("succeeded" in row for row in rows.values())
        created = {t["family"]: t["id"] for t in emulator.tasks()}
        assert created["kling"] in rows["kling"]  # the upstream id, for support

    def test_a_failure_is_a_row_and_exit_1(self, own_db, emulator):
        emulator.configure(error_rate=1.0)  # every call answers 500: retried, then given up
        result = smoke("--emulator", "--family", "flux", "--timeout", "60",
                       COMETJOBS_SUBMIT_MAX_ATTEMPTS="1")
        assert result.returncode == 1, result.stdout + result.stderr
        [row] = result.stdout.strip().splitlines()[2:]
        assert row.split()[:3] == ["flux", "flux-dev", "failed:"]
        assert "upstream_http_500" in row
