"""Seedance: the adapter against CometAPI's documented payloads, the `--flag`
settings in the prompt, and jobs through the real pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.providers.base import UpstreamState
from app.providers.seedance import ADAPTER
from tests.helpers import get_job, submit, wait_terminal
from tests.providers.video_support import input_file, no_records, png, run_job, spec, task_with
from tests.support.waiting import wait_for

# The get page's example answer.
SUCCEEDED = {"id": "021773297205999example", "model": "doubao-seedance-1-5-pro-251215", "status": "succeeded",
             "content": {"video_url": "https://ark-content-generation.tos-cn-beijing.volces.com/x.mp4?X-Tos-Algorithm=a&X-Tos-Signature=b"},
             "created_at": 1773297205, "updated_at": 1773297261, "resolution": "720p", "duration": 5,
             "ratio": "16:9", "framespersecond": 24}


class TestCreateContract:
    def test_documented_request_shape_with_settings_as_flags(self):
        job_input = ADAPTER.validate(spec("doubao-seedance-1-5-pro"),
                                     {"prompt": "a koi pond in rain --duration 5 --ratio 16:9"}, no_records())
        request = ADAPTER.build_create(spec("doubao-seedance-1-5-pro"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/volc/v3/contents/generations/tasks")
        assert request.json == {"model": "doubao-seedance-1-5-pro-251215", "content": [
            {"type": "text", "text": "a koi pond in rain --resolution 720p --ratio 16:9 --duration 5"}]}

    def test_first_and_last_frames_carry_roles_and_uploads_go_inline(self):
        job_input = {"prompt": "p", "duration": 5, "ratio": "adaptive", "resolution": "720p",
                     "image": "https://a.example/f.png", "last_frame": "upl_1"}
        content = ADAPTER.build_create(spec("doubao-seedance-1-0-lite-i2v"), job_input,
                                       [input_file("last_frame", png())], None).json["content"]
        assert content[1] == {"type": "image_url", "image_url": {"url": "https://a.example/f.png"}, "role": "first_frame"}
        assert content[2]["role"] == "last_frame"
        assert content[2]["image_url"]["url"].startswith("data:image/png;base64,")

    def test_documented_create_answer_gives_the_id(self):
        assert ADAPTER.parse_create(spec("doubao-seedance-1-0-pro"), {"id": "021773297205999example"}).upstream_id == (
            "021773297205999example")


class TestPollContract:
    def test_documented_succeeded_answer_collects_content_video_url(self):
        result = ADAPTER.parse_poll(spec("doubao-seedance-1-5-pro"), "021773297205999example", SUCCEEDED)
        assert result.state is UpstreamState.SUCCEEDED
        assert [(o.name, o.url) for o in result.outputs] == [("video", SUCCEEDED["content"]["video_url"])]
        assert (result.started_at, result.finished_at) == (datetime.fromtimestamp(1773297205, UTC),
                                                          datetime.fromtimestamp(1773297261, UTC))

    @pytest.mark.parametrize(("word", "state"), [("queued", UpstreamState.PENDING), ("running", UpstreamState.RUNNING),
                                                 ("failed", UpstreamState.FAILED), ("cancelled", UpstreamState.FAILED)])
    def test_unverified_status_words_come_from_the_catalogue(self, word, state):
        assert ADAPTER.parse_poll(spec("doubao-seedance-1-0-pro"), "x", {**SUCCEEDED, "status": word}).state is state

    def test_a_catalogue_edit_changes_a_status_word(self):
        corrected = spec("doubao-seedance-1-0-pro", statuses={"in_queue": "pending", "succeeded": "succeeded"})
        assert ADAPTER.parse_poll(corrected, "x", {"status": "in_queue"}).state is UpstreamState.PENDING
        assert ADAPTER.parse_poll(corrected, "x", {"status": "queued"}).state is UpstreamState.UNKNOWN

    def test_failure_keeps_the_upstream_error(self):
        body = {"id": "x", "status": "failed", "error": {"code": "OutputVideoSensitiveContentDetected",
                                                           "message": "may contain sensitive information"}}
        result = ADAPTER.parse_poll(spec("doubao-seedance-1-0-pro"), "x", body)
        assert (result.error_code, result.error_message) == ("OutputVideoSensitiveContentDetected",
                                                              "may contain sensitive information")


def fields_in(api, client, model, **fields):
    response = api.post("/v1/jobs", json={"model": model, "input": fields}, headers=client.headers)
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


class TestFlags:
    def test_flags_and_short_forms_become_fields(self):
        out = ADAPTER.validate(spec("doubao-seedance-1-0-pro"), {
            "prompt": "a meadow --dur 10 --rt 9:16 --rs 480p --seed 42 --cf true --wm false"}, no_records())
        assert out == {"prompt": "a meadow", "duration": 10, "ratio": "9:16", "resolution": "480p", "seed": 42,
                       "camera_fixed": True, "watermark": False}

    def test_fields_alone_work_and_get_defaults(self):
        out = ADAPTER.validate(spec("doubao-seedance-1-0-lite-t2v"), {"prompt": "p", "ratio": "1:1"}, no_records())
        assert out == {"prompt": "p", "duration": 5, "ratio": "1:1", "resolution": "720p"}

    def test_unknown_double_dash_text_is_left_in_the_prompt(self):
        out = ADAPTER.validate(spec("doubao-seedance-1-0-pro"), {"prompt": "a sign reading --open late--"}, no_records())
        assert out["prompt"] == "a sign reading --open late--"

    def test_duration_flag_not_allowed_is_422(self, api, make_client):
        errors = fields_in(api, make_client(), "doubao-seedance-1-0-pro", prompt="p --duration 7")
        assert "not allowed" in errors["input.duration"] and "5, 10" in errors["input.duration"]

    def test_ratio_flag_not_allowed_is_422(self, api, make_client):
        errors = fields_in(api, make_client(), "doubao-seedance-1-0-lite-t2v", prompt="p --ratio adaptive")
        assert "input.ratio" in errors

    def test_flag_that_disagrees_with_a_field_is_422(self, api, make_client):
        errors = fields_in(api, make_client(), "doubao-seedance-1-0-pro", prompt="p --duration 10", duration=5)
        assert "disagrees" in errors["input.prompt"]

    def test_unreadable_flag_value_is_422(self, api, make_client):
        errors = fields_in(api, make_client(), "doubao-seedance-1-0-pro", prompt="p --camerafixed maybe")
        assert "camera_fixed" in errors["input.prompt"]

    def test_image_rules_per_model(self, api, make_client):
        client = make_client()
        assert "input.image" in fields_in(api, client, "doubao-seedance-1-0-lite-i2v", prompt="p")
        assert "input.image" in fields_in(api, client, "doubao-seedance-1-0-lite-t2v", prompt="p",
                                          image="https://a.example/f.png")
        assert "input.last_frame" in fields_in(api, client, "doubao-seedance-1-0-pro", prompt="p",
                                               image="https://a.example/f.png", last_frame="https://a.example/l.png")


class TestEndToEnd:
    def test_flags_reach_the_upstream_text(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "doubao-seedance-1-0-pro", {"prompt": "dunes at dusk --rt 21:9 --dur 10"})
        assert job["status"] == "succeeded", job
        assert job["input"]["ratio"] == "21:9" and job["input"]["duration"] == 10
        task = task_with(emulator, "seedance", "dunes at dusk")
        assert (task["params"]["duration"], task["params"]["ratio"], task["params"]["resolution"]) == (
            "10", "21:9", "1080p")
        [artifact] = job["artifacts"]
        assert artifact["name"] == "video" and artifact["size_bytes"] > 0

    def test_upstream_failure_is_failed_with_the_upstream_reason(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "doubao-seedance-1-5-pro", {"prompt": "something forbidden [fail]"})
        assert job["status"] == "failed"
        assert job["error"]["source"] == "upstream"
        assert job["error"]["code"] == "OutputVideoSensitiveContentDetected"
        assert "sensitive information" in job["error"]["message"]

    def test_undocumented_status_word_keeps_polling_until_succeeded(self, http, make_client, emulator):
        emulator.configure(job_seconds=3)
        client = make_client()
        created = submit(http, client, model="doubao-seedance-1-0-pro", input={"prompt": "a comet [odd-status]"})
        seen = wait_for(lambda: (lambda j: j if j["upstream"]["status"] == "rendering_on_mars" else None)(
            get_job(http, client, created["id"])), timeout=60, interval=0.1, message="the odd status word")
        assert seen["status"] == "running"
        assert wait_terminal(http, client, created["id"], timeout=90)["status"] == "succeeded"
