"""Kling: the adapter against CometAPI's documented payloads (both Omni query
shapes), input rules, and jobs through the real pipeline."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime

import pytest
from PIL import Image

from app.providers.base import UnreadableAnswer, UpstreamState
from app.providers.kling import ADAPTER
from tests.providers.video_support import (
    input_file,
    no_records,
    png,
    run_job,
    spec,
    task_with,
    upload,
)

# The create answer's documented envelope (text-to-video page), with values filled in.
CREATE_ANSWER = {"code": 0, "message": "SUCCEED", "request_id": "CjMkWWdvKk", "data": {
    "task_id": "878106242831892487", "task_status": "submitted",
    "created_at": 1777385361501, "updated_at": 1777385361501}}
# The individual query page's example, verbatim but for the elided updated_at.
QUERY_PROCESSING = {"code": 0, "message": "SUCCEED", "request_id": "878106242831892487", "data": {
    "task_id": "878106242831892487", "task_info": {}, "created_at": 1777385361501, "updated_at": 1777385372000,
    "task_result": {}, "task_status": "processing"}}
# The Omni query page's example (Kling's own shape).
OMNI_PROCESSING = {"code": 0, "message": "success", "request_id": "878106484537192522", "data": {
    "task_id": "878106484537192522", "task_info": {}, "created_at": 1777385419126, "updated_at": 1777385430317,
    "task_result": {}, "task_status": "processing"}}


def succeeded(**result):
    data = {**QUERY_PROCESSING["data"], "task_status": "succeed", "task_result": result}
    return {**QUERY_PROCESSING, "data": data}


def omni_wrapped(status: str, progress: str, **inner):
    """The Omni query's other documented shape: data.status / data.progress, Kling's payload in data.data."""
    kling = {**OMNI_PROCESSING["data"], **inner}
    return {"code": 0, "message": "success", "data": {
        "task_id": "878106484537192522", "status": status, "progress": progress, "fail_reason": "",
        "submit_time": 1777385419, "start_time": 1777385420, "finish_time": 0, "data": kling}}


class TestCreateContract:
    def test_text2video_body_carries_model_name_and_settings(self):
        job_input = {"prompt": "a fox", "aspect_ratio": "9:16", "mode": "pro", "duration": "10", "cfg_scale": 0.4}
        request = ADAPTER.build_create(spec("kling-text2video"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/kling/v1/videos/text2video")
        assert request.json == {"model_name": "kling-v1-6", **job_input}

    def test_uploaded_image_goes_as_bare_base64_and_urls_as_given(self):
        data = png()
        job_input = {"image": "upl_1", "image_tail": "https://a.example/last.png", "mode": "std", "duration": "5"}
        request = ADAPTER.build_create(spec("kling-image2video"), job_input, [input_file("image", data)], None)
        assert request.path == "/kling/v1/videos/image2video"
        assert request.json["image"] == base64.b64encode(data).decode()
        assert request.json["image_tail"] == "https://a.example/last.png"

    def test_omni_frames_become_an_image_list(self):
        job_input = {"prompt": "p", "image": "https://a.example/f.png", "mode": "std", "duration": "5",
                     "aspect_ratio": "16:9"}
        body = ADAPTER.build_create(spec("kling-omni-video"), job_input, [], None).json
        assert body["model_name"] == "kling-video-o1"
        assert body["image_list"] == [{"image_url": "https://a.example/f.png", "type": "first_frame"}]
        assert "image" not in body

    def test_documented_create_answer_gives_data_task_id(self):
        assert ADAPTER.parse_create(spec("kling-text2video"), CREATE_ANSWER).upstream_id == "878106242831892487"

    def test_refusal_in_the_envelope_fails_at_once_with_kling_message(self):
        created = ADAPTER.parse_create(spec("kling-text2video"), {"code": 1301, "message": "Trigger the content "
                                       "risk control of the platform", "request_id": "r1", "data": None})
        assert created.immediate is not None and created.immediate.state is UpstreamState.FAILED
        assert created.immediate.error_code == "kling_1301"
        assert "risk control" in created.immediate.error_message


class TestPollContract:
    def test_query_path_follows_the_action(self):
        assert ADAPTER.build_poll(spec("kling-image"), "42").path == "/kling/v1/images/generations/42"
        assert ADAPTER.build_poll(spec("kling-omni-video"), "42").path == "/kling/v1/videos/omni-video/42"

    def test_documented_query_is_running_with_millisecond_times(self):
        result = ADAPTER.parse_poll(spec("kling-text2video"), "878106242831892487", QUERY_PROCESSING)
        assert result.state is UpstreamState.RUNNING
        assert result.started_at == datetime.fromtimestamp(1777385361.501, UTC)

    def test_submitted_is_pending(self):
        body = {**QUERY_PROCESSING, "data": {**QUERY_PROCESSING["data"], "task_status": "submitted"}}
        assert ADAPTER.parse_poll(spec("kling-text2video"), "x", body).state is UpstreamState.PENDING

    def test_succeed_collects_each_video_url(self):
        body = succeeded(videos=[{"id": "v1", "url": "https://cdn.klingai.example/v1.mp4", "duration": "5"}])
        result = ADAPTER.parse_poll(spec("kling-text2video"), "x", body)
        assert result.state is UpstreamState.SUCCEEDED
        assert [(o.name, o.url) for o in result.outputs] == [("video", "https://cdn.klingai.example/v1.mp4")]
        assert result.finished_at == datetime.fromtimestamp(1777385372, UTC)

    def test_image_generation_collects_every_image(self):
        body = succeeded(images=[{"index": 0, "url": "https://c.example/0.png"}, {"index": 1, "url": "https://c.example/1.png"}])
        result = ADAPTER.parse_poll(spec("kling-image"), "x", body)
        assert [o.name for o in result.outputs] == ["image_1", "image_2"]

    def test_failure_keeps_task_status_msg(self):
        body = {**QUERY_PROCESSING, "data": {**QUERY_PROCESSING["data"], "task_status": "failed",
                                             "task_status_msg": "Failure to pass the risk control system"}}
        result = ADAPTER.parse_poll(spec("kling-text2video"), "x", body)
        assert (result.state, result.error_message) == (UpstreamState.FAILED, "Failure to pass the risk control system")

    def test_omni_kling_shape(self):
        assert ADAPTER.parse_poll(spec("kling-omni-video"), "x", OMNI_PROCESSING).state is UpstreamState.RUNNING

    def test_omni_wrapped_shape_running_with_percent_progress(self):
        result = ADAPTER.parse_poll(spec("kling-omni-video"), "x", omni_wrapped("IN_PROGRESS", "58%"))
        assert (result.state, result.progress) == (UpstreamState.RUNNING, 58)

    def test_omni_wrapped_shape_success_reads_the_nested_url(self):
        body = omni_wrapped("SUCCESS", "100%", task_status="succeed",
                            task_result={"videos": [{"id": "1", "url": "https://c.example/o.mp4", "duration": "5"}]})
        result = ADAPTER.parse_poll(spec("kling-omni-video"), "x", body)
        assert result.state is UpstreamState.SUCCEEDED
        assert [o.url for o in result.outputs] == ["https://c.example/o.mp4"]

    def test_omni_wrapped_shape_failure_reason(self):
        body = omni_wrapped("FAILURE", "100%")
        body["data"]["fail_reason"] = "image too small"
        result = ADAPTER.parse_poll(spec("kling-omni-video"), "x", body)
        assert (result.state, result.error_message) == (UpstreamState.FAILED, "image too small")

    def test_unknown_status_word_means_keep_polling(self):
        body = {**QUERY_PROCESSING, "data": {**QUERY_PROCESSING["data"], "task_status": "rendering"}}
        assert ADAPTER.parse_poll(spec("kling-text2video"), "x", body).state is UpstreamState.UNKNOWN

    def test_answer_without_data_is_unreadable(self):
        with pytest.raises(UnreadableAnswer):
            ADAPTER.parse_poll(spec("kling-text2video"), "x", {"code": 1203, "message": "task not found"})


def post(api, client, model, **fields):
    return api.post("/v1/jobs", json={"model": model, "input": fields}, headers=client.headers)


def fields_in(response):
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


class TestValidation:
    def test_defaults_are_filled_in(self):
        out = ADAPTER.validate(spec("kling-text2video"), {"prompt": "p"}, no_records())
        assert out == {"prompt": "p", "aspect_ratio": "16:9", "mode": "std", "duration": "5"}

    def test_prompt_over_500_and_negative_over_200(self, api, make_client):
        errors = fields_in(post(api, make_client(), "kling-text2video", prompt="x" * 501, negative_prompt="n" * 201))
        assert "500" in errors["input.prompt"] and "200" in errors["input.negative_prompt"]

    @pytest.mark.parametrize(("field", "value"), [("aspect_ratio", "5:4"), ("duration", 7), ("mode", "max"),
                                                  ("cfg_scale", 1.5)])
    def test_out_of_range_values_are_422(self, api, make_client, field, value):
        assert f"input.{field}" in fields_in(post(api, make_client(), "kling-text2video", prompt="p", **{field: value}))

    def test_image2video_needs_an_image(self, api, make_client):
        assert "input.image" in fields_in(post(api, make_client(), "kling-image2video", prompt="p"))

    def test_field_the_model_does_not_take_is_refused(self, api, make_client):
        errors = fields_in(post(api, make_client(), "kling-text2video", prompt="p", image="https://a.example/i.png"))
        assert "not supported" in errors["input.image"]

    def test_image_generation_has_no_21_9(self, api, make_client):
        errors = fields_in(post(api, make_client(), "kling-image", prompt="p", aspect_ratio="21:9"))
        assert "2:3" in errors["input.aspect_ratio"]

    @pytest.mark.parametrize("field", ["camera_control", "aspect_ratio"])
    def test_image_to_video_takes_no_camera_control_or_aspect_ratio(self, api, make_client, field):
        value = {"type": "down_back"} if field == "camera_control" else "16:9"
        errors = fields_in(post(api, make_client(), "kling-image2video", image="https://a.example/f.png",
                                **{field: value}))
        assert "not supported" in errors[f"input.{field}"]

    @pytest.mark.parametrize(("model", "field"), [("kling-image2video", "image"), ("kling-image2video", "image_tail"),
                                                  ("kling-image", "image")])
    def test_images_are_jpg_or_png_only(self, api, make_client, model, field):
        client = make_client()
        webp = io.BytesIO()
        Image.new("RGB", (320, 320)).save(webp, format="WEBP")
        made = api.post("/v1/uploads", files={"file": ("f.webp", webp.getvalue(), "image/webp")},
                        headers=client.headers)
        fields = {"prompt": "p", "image": "https://a.example/f.png", field: made.json()["id"]}
        errors = fields_in(post(api, client, model, **fields))
        assert "JPG/JPEG or PNG" in errors[f"input.{field}"]
        by_suffix = fields_in(post(api, client, model, **(fields | {field: "https://a.example/f.webp"})))
        assert "JPG/JPEG or PNG" in by_suffix[f"input.{field}"]

    def test_simple_camera_move_needs_exactly_one_axis(self, api, make_client):
        errors = fields_in(post(api, make_client(), "kling-text2video", prompt="p", camera_control={
            "type": "simple", "config": {"pan": 2, "zoom": 3}}))
        assert any(field.startswith("input.camera_control") for field in errors)


class TestEndToEnd:
    def test_uploaded_first_frame_reaches_kling_inline(self, http, make_client, emulator):
        client = make_client()
        frame = upload(http, client, png())
        job = run_job(http, client, "kling-image2video", {"prompt": "a heron takes off", "image": frame})
        assert job["status"] == "succeeded", job
        assert [a["name"] for a in job["artifacts"]] == ["video"]
        task = task_with(emulator, "kling", "a heron takes off")
        assert task["params"]["images"] == [f"base64:{len(base64.b64encode(png()))}"]

    def test_image_generation_stores_every_image(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "kling-image", {"prompt": "three pears on a table", "n": 3})
        assert job["status"] == "succeeded", job
        assert sorted(a["name"] for a in job["artifacts"]) == ["image_1", "image_2", "image_3"]
        assert {a["content_type"] for a in job["artifacts"]} == {"image/png"}

    @pytest.mark.parametrize("model", ["kling-text2video", "kling-omni-video"])
    def test_upstream_failure_is_failed_with_the_upstream_reason(self, http, make_client, emulator, model):
        client = make_client()
        job = run_job(http, client, model, {"prompt": "something forbidden [fail]"})
        assert job["status"] == "failed"
        assert job["error"]["source"] == "upstream"
        assert job["error"]["message"] == "Failure to pass the risk control system"
