"""Runway: the adapter against both documented answers of the task query (Runway's
own and CometAPI's wrapper), input rules, and jobs through the real pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.providers.base import UpstreamState
from app.providers.runway import ADAPTER
from tests.providers.video_support import (
    input_file,
    no_records,
    png,
    run_job,
    spec,
    task_with,
    upload,
)

# Runway's own task, as documented on the official-format query page.
RAW_SUCCEEDED = {"id": "d2e3a1c4-5b6f-4a7e-9c8d-0e1f2a3b4c5d", "status": "SUCCEEDED",
                 "createdAt": "2026-03-13T08:15:30.123Z", "output": ["https://dnznrvs05pmza.cloudfront.net/x.mp4"]}
# CometAPI's wrapper, as observed live on 2026-03-13 and documented on the same page.
WRAPPED_QUEUED = {"code": "success", "message": "", "data": {
    "task_id": "d2e3a1c4-5b6f-4a7e-9c8d-0e1f2a3b4c5d", "action": "IMAGE_TO_VIDEO", "status": "QUEUED",
    "fail_reason": "", "submit_time": 1773389730, "start_time": 0, "finish_time": 0, "progress": "0%",
    "data": {"id": "d2e3a1c4-5b6f-4a7e-9c8d-0e1f2a3b4c5d", "status": "PENDING", "createdAt": "2026-03-13T08:15:30.123Z"}}}


def wrapped(outer_status: str, progress: str, **raw):
    data = {**WRAPPED_QUEUED["data"], "status": outer_status, "progress": progress,
            "data": {**WRAPPED_QUEUED["data"]["data"], **raw}}
    return {**WRAPPED_QUEUED, "data": data}


class TestCreateContract:
    def test_image_to_video_body_maps_fields_to_runway_keys(self):
        job_input = {"prompt": "leaves drift", "image": "https://a.example/f.jpg", "ratio": "720:1280",
                     "duration": 10, "seed": 7}
        request = ADAPTER.build_create(spec("runway-gen4-turbo"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/runwayml/v1/image_to_video")
        assert request.json == {"model": "gen4_turbo", "promptText": "leaves drift", "promptImage":
                                "https://a.example/f.jpg", "ratio": "720:1280", "duration": 10, "seed": 7}
        assert request.headers == {"X-Runway-Version": "2024-11-06"}

    def test_upload_goes_as_a_data_uri(self):
        request = ADAPTER.build_create(spec("runway-gen4-turbo"), {"image": "upl_1", "ratio": "1280:720",
                                       "duration": 5}, [input_file("image", png())], None)
        assert request.json["promptImage"].startswith("data:image/png;base64,")

    def test_video_to_video_and_upscale_bodies(self):
        aleph = ADAPTER.build_create(spec("runway-gen4-aleph"), {"prompt": "snow", "video": "https://a.example/v.mp4",
                                     "ratio": "1280:720", "references": ["https://a.example/s.png"]}, [], None)
        assert aleph.path == "/runwayml/v1/video_to_video"
        assert aleph.json["videoUri"] == "https://a.example/v.mp4"
        assert aleph.json["references"] == [{"type": "image", "uri": "https://a.example/s.png"}]
        upscale = ADAPTER.build_create(spec("runway-upscale"), {"video": "https://a.example/v.mp4"}, [], None)
        assert (upscale.path, upscale.json) == ("/runwayml/v1/video_upscale",
                                                {"model": "upscale_v1", "videoUri": "https://a.example/v.mp4"})

    def test_body_keys_are_catalogue_configuration(self):
        corrected = spec("runway-gen4-turbo", body={"prompt": "prompt_text", "image": "image_url"})
        body = ADAPTER.build_create(corrected, {"prompt": "p", "image": "https://a.example/f.jpg"}, [], None).json
        assert body == {"model": "gen4_turbo", "prompt_text": "p", "image_url": "https://a.example/f.jpg"}

    @pytest.mark.parametrize("answer", [{"id": "abc"}, {"code": "success", "data": "abc"},
                                        {"code": "success", "data": {"task_id": "abc"}}])
    def test_create_answer_in_either_shape_gives_the_id(self, answer):
        assert ADAPTER.parse_create(spec("runway-gen4-turbo"), answer).upstream_id == "abc"


class TestPollContract:
    def test_raw_succeeded_collects_output_with_iso_time(self):
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d2e3", RAW_SUCCEEDED)
        assert result.state is UpstreamState.SUCCEEDED
        assert [(o.name, o.url) for o in result.outputs] == [("video", "https://dnznrvs05pmza.cloudfront.net/x.mp4")]
        assert result.started_at == datetime(2026, 3, 13, 8, 15, 30, 123000, tzinfo=UTC)

    def test_raw_running_progress_is_a_fraction(self):
        body = {"id": "d", "status": "RUNNING", "progress": 0.58, "createdAt": "2026-03-13T08:15:30Z"}
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", body)
        assert (result.state, result.progress) == (UpstreamState.RUNNING, 58)

    def test_raw_failure_keeps_code_and_reason(self):
        body = {"id": "d", "status": "FAILED", "failure": "The prompt did not pass moderation",
                "failureCode": "SAFETY.INPUT.TEXT"}
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", body)
        assert (result.state, result.error_code, result.error_message) == (
            UpstreamState.FAILED, "SAFETY.INPUT.TEXT", "The prompt did not pass moderation")

    def test_wrapped_queued_is_pending_with_zero_percent(self):
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d2e3", WRAPPED_QUEUED)
        assert (result.state, result.progress) == (UpstreamState.PENDING, 0)
        assert result.started_at == datetime.fromtimestamp(1773389730, UTC)

    def test_wrapped_success_reads_the_nested_output(self):
        body = wrapped("SUCCESS", "100%", status="SUCCEEDED", output=["https://c.example/w.mp4"])
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d2e3", body)
        assert result.state is UpstreamState.SUCCEEDED
        assert [o.url for o in result.outputs] == ["https://c.example/w.mp4"]

    def test_wrapped_success_falls_back_to_result_url(self):
        body = wrapped("SUCCESS", "100%")
        body["data"]["result_url"] = "https://c.example/r.mp4"
        assert [o.url for o in ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", body).outputs] == [
            "https://c.example/r.mp4"]

    def test_wrapped_failure_reason(self):
        body = wrapped("FAILURE", "100%", status="FAILED", failureCode="INPUT_PREPROCESSING.SAFETY.TEXT")
        body["data"]["fail_reason"] = "content moderation"
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", body)
        assert (result.state, result.error_code, result.error_message) == (
            UpstreamState.FAILED, "INPUT_PREPROCESSING.SAFETY.TEXT", "content moderation")

    def test_task_not_exist_means_keep_polling(self):
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", {"code": "task_not_exist", "message":
                                    "task_not_exist", "data": None})
        assert (result.state, result.raw_status) == (UpstreamState.PENDING, "task_not_exist")

    def test_unknown_status_word_means_keep_polling(self):
        assert ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", {"id": "d", "status": "WARMING"}).state is (
            UpstreamState.UNKNOWN)


def post(api, client, model, **fields):
    return api.post("/v1/jobs", json={"model": model, "input": fields}, headers=client.headers)


def fields_in(response):
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


class TestValidation:
    def test_defaults_are_filled_in(self):
        out = ADAPTER.validate(spec("runway-gen4-turbo"), {"image": "https://a.example/f.jpg"}, no_records())
        assert out == {"image": "https://a.example/f.jpg", "ratio": "1280:720", "duration": 5}

    def test_image_to_video_needs_an_image_and_a_known_ratio(self, api, make_client):
        errors = fields_in(post(api, make_client(), "runway-gen4-turbo", prompt="p", ratio="16:9"))
        assert set(errors) == {"input.image", "input.ratio"}

    def test_upscale_takes_only_a_video_url(self, api, make_client):
        errors = fields_in(post(api, make_client(), "runway-upscale", video="ftp://a.example/v.mp4", prompt="p"))
        assert set(errors) == {"input.video", "input.prompt"}


class TestEndToEnd:
    def test_image_to_video_from_an_upload_through_both_answer_shapes(self, http, make_client, emulator):
        emulator.configure(job_seconds=3)  # long enough for several polls, however busy the machine
        client = make_client()
        frame = upload(http, client, png())
        job = run_job(http, client, "runway-gen4-turbo", {"prompt": "a lantern sways", "image": frame, "duration": 10})
        assert job["status"] == "succeeded", job
        assert [a["name"] for a in job["artifacts"]] == ["video"]
        task = task_with(emulator, "runway", "a lantern sways")
        assert task["params"]["prompt_image"].startswith("data:image/png;base64,")
        assert task["params"]["version"] == "2024-11-06"
        assert task["polls"] >= 3  # task_not_exist first, then the two shapes in turn

    def test_upstream_failure_is_failed_with_the_upstream_reason(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "runway-gen4-aleph", {"prompt": "something forbidden [fail]",
                                                          "video": "https://a.example/v.mp4"})
        assert job["status"] == "failed"
        assert job["error"]["source"] == "upstream"
        assert job["error"]["message"] == "The prompt did not pass Runway's content moderation"
