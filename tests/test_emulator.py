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


def _boxes(data: bytes) -> list[tuple[str, int]]:
    """Top-level ISO BMFF boxes (type, size); they must tile the file exactly."""
    import struct

    boxes, at = [], 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        assert size >= 8, (kind, size)
        boxes.append((kind.decode(), size))
        at += size
    assert at == len(data)
    return boxes


def test_a_sora_video_is_a_real_mp4_of_the_configured_size():
    import hashlib

    app = create_app(Config(job_seconds=0, content_bytes=20_000))
    with TestClient(app) as client:
        video_id = create(client, "a paper boat").json()["id"]
        video = client.get(f"/v1/videos/{video_id}/content")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert len(video.content) == 20_000
    kinds = [kind for kind, _ in _boxes(video.content)]
    assert kinds[:2] == ["ftyp", "moov"] and "mdat" in kinds and kinds[-1] == "free"
    assert b"avc1" in video.content[:4096]  # H.264
    served = app.state.emulator.stats.served_sha256[f"{video_id}:video"]
    assert served == hashlib.sha256(video.content).hexdigest()


def test_a_stalled_task_never_ends_even_when_tasks_are_instant():
    from emulator.state import State

    state = State(Config(job_seconds=0))
    stalled = state.new_task("sora", "sora-2", "a paper boat [stall]", "video_")
    plain = state.new_task("sora", "sora-2", "a paper boat", "video_")
    assert stalled.phase() == ("running", 42)
    assert plain.phase() == ("succeeded", 100)
