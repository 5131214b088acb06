"""Flux: the adapter against the documented create and get_result payloads,
per-model input rules, and jobs through the real pipeline."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from app.core.errors import ValidationFailed
from app.providers.base import UpstreamState
from app.providers.flux import ADAPTER
from tests.providers.video_support import input_file, no_records, png, run_job, spec

# The query page's documented answer, with its field values filled in.
READY = {"id": "f-123", "status": "Ready", "result": {
    "seed": 42, "prompt": "a lighthouse", "sample": "https://delivery-eu1.bfl.ai/results/f-123/sample.jpeg?se=x&sig=y",
    "duration": 6.2, "start_time": 1773314950.5, "end_time": 1773314956.7}}


class TestCreateContract:
    def test_model_is_in_the_path_and_fields_go_as_given(self):
        job_input = {"prompt": "a lighthouse", "width": 1024, "height": 768, "seed": 7, "output_format": "png"}
        request = ADAPTER.build_create(spec("flux-dev"), job_input, [], None)
        assert (request.method, request.path, request.json) == ("POST", "/flux/v1/flux-dev", job_input)

    def test_uploaded_kontext_image_goes_as_bare_base64(self):
        data = png()
        request = ADAPTER.build_create(spec("flux-kontext-pro"), {"prompt": "blue", "input_image": "upl_1"},
                                       [input_file("input_image", data)], None)
        assert request.json["input_image"] == base64.b64encode(data).decode()

    @pytest.mark.parametrize("answer", [{"id": "f-123", "polling_url": "https://x/get_result?id=f-123"},
                                        {"task_id": "f-123"}])
    def test_create_answer_gives_the_task_id(self, answer):
        assert ADAPTER.parse_create(spec("flux-dev"), answer).upstream_id == "f-123"


class TestPollContract:
    def test_query_passes_the_id(self):
        request = ADAPTER.build_poll(spec("flux-dev"), "f-123")
        assert (request.method, request.path, request.params) == ("GET", "/flux/v1/get_result", {"id": "f-123"})

    def test_documented_ready_answer_collects_the_sample(self):
        result = ADAPTER.parse_poll(spec("flux-dev"), "f-123", READY)
        assert result.state is UpstreamState.SUCCEEDED
        [image] = result.outputs
        assert (image.name, image.url) == ("image", READY["result"]["sample"])
        assert result.finished_at == datetime.fromtimestamp(1773314956.7, UTC)

    def test_pending_with_fractional_progress(self):
        result = ADAPTER.parse_poll(spec("flux-dev"), "f", {"id": "f", "status": "Pending", "result": None,
                                                             "progress": 0.4})
        assert (result.state, result.progress) == (UpstreamState.RUNNING, 40)

    @pytest.mark.parametrize(("word", "code"), [("Task not found", "task_not_found"),
                                                ("Content Moderated", "moderation_blocked"),
                                                ("Error", "generation_failed")])
    def test_failure_words(self, word, code):
        result = ADAPTER.parse_poll(spec("flux-dev"), "f", {"id": "f", "status": word, "result": None,
                                                             "details": {"reason": "why"}})
        assert (result.state, result.error_code) == (UpstreamState.FAILED, code)
        assert word in result.error_message and "why" in result.error_message

    def test_unknown_status_word_means_keep_polling(self):
        assert ADAPTER.parse_poll(spec("flux-dev"), "f", {"status": "Warming"}).state is UpstreamState.UNKNOWN


class TestValidation:
    @pytest.mark.parametrize(("model", "raw", "field", "words"), [
        ("flux-dev", {"prompt": "x", "width": 1000}, "input.width", "multiple of 32"),
        ("flux-dev", {"prompt": "x", "height": 2048}, "input.height", "256 to 1440"),
        ("flux-dev", {"prompt": "x", "steps": 80}, "input.steps", "1 to 50"),
        ("flux-pro-1.1", {"prompt": "x", "steps": 20}, "input.steps", "not supported"),
        ("flux-pro-1.1-ultra", {"prompt": "x", "aspect_ratio": "5:1"}, "input.aspect_ratio", "21:9"),
        ("flux-pro-1.1-ultra", {"prompt": "x", "width": 1024}, "input.width", "not supported"),
        ("flux-kontext-pro", {"prompt": "x", "input_image": "ftp://x"}, "input.input_image", "upload id"),
    ])
    def test_invalid_input_names_the_field(self, model, raw, field, words):
        with pytest.raises(ValidationFailed) as caught:
            ADAPTER.validate(spec(model), raw, no_records())
        messages = {e.field: e.message for e in caught.value.errors}
        assert field in messages, messages
        assert words.lower() in messages[field].lower()


class TestEndToEnd:
    def test_image_is_stored_from_the_delivery_link(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "flux-pro-1.1", {"prompt": "a lighthouse", "width": 512, "height": 512,
                                                     "output_format": "png"})
        assert job["status"] == "succeeded", job
        [image] = job["artifacts"]
        assert (image["name"], image["content_type"]) == ("image", "image/png")
        original = emulator.download(f"/cdn/flux/{job['upstream']['id']}/sample.png")
        assert http.get(image["url"], headers=client.headers).content == original

    def test_upstream_failure_is_failed_with_the_moderation_details(self, http, make_client, emulator):
        job = run_job(http, make_client(), "flux-dev", {"prompt": "a famous logo [fail]"})
        assert job["status"] == "failed"
        assert (job["error"]["code"], job["error"]["source"]) == ("moderation_blocked", "upstream")
        assert "Derivative Works Filter" in job["error"]["message"]
