"""The emulator's own switches that stand in for a saturated provider."""

from __future__ import annotations

from fastapi.testclient import TestClient

from emulator.app import create_app
from emulator.state import Config


def create(client: TestClient, prompt: str):
    return client.post("/v1/videos", data={"model": "sora-2", "prompt": prompt, "seconds": "4", "size": "1280x720"})


def test_creates_beyond_max_in_flight_are_429_with_retry_after_until_a_task_finishes():
    app = create_app(Config(max_in_flight=2, retry_after=3, job_seconds=60))
    with TestClient(app) as client:
        assert [create(client, f"p{n}").status_code for n in range(2)] == [200, 200]
        refused = create(client, "p2")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
        assert refused.json()["error"]["code"] == "rate_limit"
        client.post("/_emulator/config", json={"job_seconds": 0})  # what is open finishes
        for task in app.state.emulator.tasks.values():
            task.job_seconds = 0
        assert create(client, "p3").status_code == 200
