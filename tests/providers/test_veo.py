"""Veo 3: the adapter against CometAPI's documented payloads, input rules, and jobs
through the real pipeline (reference frames upstream, a failure with its reason)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.providers.base import UnreadableAnswer, UpstreamState
from app.providers.veo import ADAPTER
from tests.providers.video_support import (
    input_file,
    no_records,
    png,
    run_job,
    spec,
    task_with,
    upload,
)

# CometAPI's Veo create answer, as documented (veo3-async-generation).
CREATE_ANSWER = {"created_at": 1773297229, "id": "task_pa9C3tVnGxYw", "model": "veo_3_1-4K", "object": "video",
                 "progress": 0, "seconds": "", "size": "16x9", "status": "queued"}


def retrieve(**fields):
    # The documented retrieve fields: id, task_id (same value), size, model, object, status, progress, created_at.
    return {"id": "task_pa9C3tVnGxYw", "task_id": "task_pa9C3tVnGxYw", "size": "16x9", "model": "veo_3_1-4K",
            "object": "video", "status": "in_progress", "progress": 35, "created_at": 1773297229, **fields}


class TestCreateContract:
    def test_create_is_multipart_with_the_alias_size_and_ordered_frames(self):
        first, last = input_file("input_reference", png(color=(1, 1, 1))), input_file("input_reference", png())
        request = ADAPTER.build_create(spec("veo3-fast"), {"prompt": "a tide pool", "size": "9x16"}, [first, last], None)
        assert (request.method, request.path) == ("POST", "/v1/videos")
        assert request.data == {"model": "veo3-fast", "prompt": "a tide pool", "size": "9x16"}
        assert request.files == [first, last]

    def test_documented_create_answer_gives_the_task_id(self):
        assert ADAPTER.parse_create(spec("veo3"), CREATE_ANSWER).upstream_id == "task_pa9C3tVnGxYw"

    def test_create_answer_without_an_id_is_unreadable(self):
        with pytest.raises(UnreadableAnswer):
            ADAPTER.parse_create(spec("veo3"), {"status": "queued"})


class TestPollContract:
    def test_documented_retrieve_while_running(self):
        result = ADAPTER.parse_poll(spec("veo3"), "task_pa9C3tVnGxYw", retrieve())
        assert (result.state, result.progress, result.outputs) == (UpstreamState.RUNNING, 35, [])
        assert result.started_at == datetime.fromtimestamp(1773297229, UTC)

    def test_queued_is_pending(self):
        assert ADAPTER.parse_poll(spec("veo3"), "t", retrieve(status="queued", progress=0)).state is UpstreamState.PENDING

    def test_completed_with_a_result_url_collects_that_url(self):
        body = retrieve(status="completed", progress=100, video_url="https://cdn.example.com/v/a.mp4")
        result = ADAPTER.parse_poll(spec("veo3"), "task_pa9C3tVnGxYw", body)
        assert result.state is UpstreamState.SUCCEEDED
        [video] = result.outputs
        assert (video.name, video.url, video.request) == ("video", "https://cdn.example.com/v/a.mp4", None)

    def test_completed_reads_metadata_url_first(self):
        """Where gateways of the same lineage put the result (CometAPI documents no completed shape)."""
        body = retrieve(status="completed", progress=100, metadata={"url": "https://filesystem.site/cdn/a.mp4"},
                        video_url="https://cdn.example.com/v/other.mp4")
        [video] = ADAPTER.parse_poll(spec("veo3"), "task_pa9C3tVnGxYw", body).outputs
        assert video.url == "https://filesystem.site/cdn/a.mp4"

    def test_completed_without_a_url_falls_back_to_the_content_route(self):
        result = ADAPTER.parse_poll(spec("veo3"), "task_pa9C3tVnGxYw", retrieve(status="completed", progress=100))
        [video] = result.outputs
        assert (video.request.method, video.request.path) == ("GET", "/v1/videos/task_pa9C3tVnGxYw/content")

    def test_result_location_is_catalogue_configuration(self):
        body = retrieve(status="completed", result={"mp4": "https://cdn.example.com/b.mp4"})
        [video] = ADAPTER.parse_poll(spec("veo3", result_url_fields=["result.mp4"]), "t", body).outputs
        assert video.url == "https://cdn.example.com/b.mp4"

    def test_failure_keeps_the_upstream_reason(self):
        body = retrieve(status="failed", error={"code": "content_policy_violation", "message": "flagged"})
        result = ADAPTER.parse_poll(spec("veo3"), "t", body)
        assert (result.state, result.error_code, result.error_message) == (
            UpstreamState.FAILED, "content_policy_violation", "flagged")

    def test_unknown_status_word_means_keep_polling(self):
        assert ADAPTER.parse_poll(spec("veo3"), "t", retrieve(status="upscaling")).state is UpstreamState.UNKNOWN


class TestValidation:
    def test_defaults_to_16x9_and_drops_an_empty_reference_list(self):
        out = ADAPTER.validate(spec("veo3"), {"prompt": "x", "input_reference": []}, no_records())
        assert out == {"prompt": "x", "size": "16x9"}

    def test_single_reference_string_is_one_frame(self):
        out = ADAPTER.validate(spec("veo3"), {"prompt": "x", "input_reference": "https://a.example/f.png"}, no_records())
        assert out["input_reference"] == ["https://a.example/f.png"]

    def test_size_outside_the_catalogue_is_422(self, api, make_client):
        client = make_client()
        response = api.post("/v1/jobs", json={"model": "veo3", "input": {"prompt": "x", "size": "1280x720"}},
                            headers=client.headers)
        assert response.status_code == 422
        [err] = response.json()["errors"]
        assert err["field"] == "input.size" and "16x9" in err["message"]

    def test_three_reference_frames_is_422(self, api, make_client):
        client = make_client()
        refs = [f"https://a.example/{i}.png" for i in range(3)]
        response = api.post("/v1/jobs", json={"model": "veo3", "input": {"prompt": "x", "input_reference": refs}},
                            headers=client.headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "input.input_reference"

    def test_unknown_upload_is_422_naming_the_frame(self, api, make_client):
        client = make_client()
        response = api.post("/v1/jobs", json={"model": "veo3", "input": {
            "prompt": "x", "input_reference": ["https://a.example/0.png", "upl_nope"]}}, headers=client.headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "input.input_reference.1"


class TestEndToEnd:
    def test_first_and_last_frame_reach_the_upstream_in_order(self, http, make_client, emulator):
        client = make_client()
        first, last = png(32, 18), png(320, 180)
        frames = [upload(http, client, first, "first.png"), upload(http, client, last, "last.png")]
        job = run_job(http, client, "veo3-pro", {"prompt": "a kite over dunes", "size": "16x9",
                                                 "input_reference": frames})
        assert job["status"] == "succeeded", job
        [artifact] = job["artifacts"]
        assert artifact["name"] == "video" and artifact["size_bytes"] > 0
        task = task_with(emulator, "veo", "a kite over dunes")
        assert task["params"]["reference_bytes"] == [len(first), len(last)]
        assert emulator.stats()["per_model"]["veo3-pro"]["downloads"] == 1
        assert http.get(artifact["url"], headers=client.headers).content == emulator.download(
            f"/_emulator/files/veo/{task['id']}.mp4")

    def test_upstream_failure_is_failed_with_the_upstream_reason(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "veo3", {"prompt": "something forbidden [fail]"})
        assert job["status"] == "failed"
        assert job["error"]["source"] == "upstream"
        assert job["error"]["code"] == "content_policy_violation"
        assert "safety filter" in job["error"]["message"]
        assert job["artifacts"] == []
