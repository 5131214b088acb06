"""`cometjobs jobs ...` (on the Python client) against the real API process."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cometjobs.cli import main
from tests.conftest import API_PORT

URL = f"http://127.0.0.1:{API_PORT}"
STALL = '{"prompt": "a paper boat [stall]"}'  # never finishes, even with a worker running


@pytest.fixture
def run(api_service, emulator, make_client):  # emulator: reset, so a stalled job stays stalled
    caller = make_client()

    def invoke(*args: str, key: str | None = caller["api_key"]):
        env = {"COMETJOBS_API_URL": URL, "COMETJOBS_API_KEY": key}
        return CliRunner().invoke(main, ["jobs", *args], env=env, catch_exceptions=False)

    return invoke


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


class TestJobsCli:
    def test_submit_get_list_cancel_events(self, run, tmp_path):
        input_file = tmp_path / "input.json"
        input_file.write_text(STALL)
        submitted = run("submit", "sora-2", "--input", f"@{input_file}", "--metadata", '{"n": 1}')
        assert submitted.exit_code == 0, submitted.output
        job = json.loads(submitted.output)
        assert job["model"] == "sora-2" and job["metadata"] == {"n": 1}
        assert json.loads(run("get", job["id"]).output)["id"] == job["id"]
        run("submit", "sora-2", "--input", STALL)
        assert len(lines(run("list", "--model", "sora-2").output)) == 2
        assert len(lines(run("list", "--limit", "1").output)) == 1
        assert json.loads(run("cancel", job["id"]).output)["status"] == "canceled"
        assert [e["id"] for e in lines(run("list", "--status", "canceled").output)] == [job["id"]]
        statuses = [e["status"] for e in lines(run("events", job["id"]).output) if e["type"] == "status"]
        assert statuses[0] == "queued" and statuses[-1] == "canceled"
        followed = lines(run("events", "--follow", job["id"]).output)  # the job ended: the stream ends
        assert [e["status"] for e in followed if e["type"] == "status"] == statuses
        watched = run("watch", job["id"])  # already ended: answered at once, exit 1 as it did not succeed
        assert watched.exit_code == 1 and json.loads(watched.stdout)["status"] == "canceled"

    def test_an_api_error_prints_its_problem_and_exits_1(self, run):
        result = run("submit", "no-such-model", "--input", "{}")
        assert result.exit_code == 1
        assert json.loads(result.stderr)["code"] == "validation_error"
        assert json.loads(run("get", "job_nope").stderr)["status"] == 404

    def test_bad_input_json_or_no_key_is_a_usage_error(self, run):
        assert run("submit", "sora-2", "--input", "{nope").exit_code == 2
        assert "COMETJOBS_API_KEY" in run("get", "job_x", key=None).output

    def test_submit_wait_then_download(self, http, run, tmp_path):
        result = run("submit", "sora-2", "--input", '{"prompt": "a lighthouse", "seconds": 4}', "--wait",
                     "--timeout", "60")
        assert result.exit_code == 0, result.output
        job = json.loads(result.stdout)
        assert job["status"] == "succeeded"
        saved = run("download", job["id"], "video", "-o", f"{tmp_path}/out/")
        assert saved.exit_code == 0, saved.output
        assert (tmp_path / "out" / "video").stat().st_size == next(a for a in job["artifacts"] if a["name"] == "video")[
            "size_bytes"]
