"""Seedream and gpt-image-1, the synchronous families: one call answers with the
images, the job still ends with them in storage (links fetched, `b64_json` stored
from the answer) and the webhook sent."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from app.core.errors import ValidationFailed
from app.providers.base import UpstreamState
from app.providers.gpt_image import ADAPTER as GPT_IMAGE
from app.providers.seedream import ADAPTER as SEEDREAM
from tests.helpers import submit, wait_terminal
from tests.providers.video_support import input_file, no_records, png, run_job, spec, task_with

# The Seedream page's documented answer, with its field values filled in.
ANSWER = {
    "model": "doubao-seedream-4-0-250828", "created": 1773314942,
    "data": [{"url": "https://ark-content.tos-cn-beijing.volces.com/a.jpeg?X-Tos-Algorithm=x&X-Tos-Signature=y",
              "size": "2048x2048"}],
    "usage": {"generated_images": 1, "output_tokens": 16384, "total_tokens": 16384},
}


class TestSeedreamContract:
    def test_body_asks_for_links_with_the_upstream_model_name(self):
        job_input = SEEDREAM.validate(spec("doubao-seedream-4-0"), {"prompt": "a lighthouse"}, no_records())
        request = SEEDREAM.build_create(spec("doubao-seedream-4-0"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/v1/images/generations")
        assert request.json == {"model": "doubao-seedream-4-0-250828", "prompt": "a lighthouse", "size": "2K",
                                "response_format": "url", "sequential_image_generation": "disabled"}
        assert request.timeout == 110

    def test_references_and_a_set_of_images(self):
        data = png()
        job_input = {"prompt": "p", "size": "4K", "images": ["upl_1", "https://a.example/b.png"], "max_images": 3}
        body = SEEDREAM.build_create(spec("doubao-seedream-4-0"), job_input, [input_file("images.0", data)], None).json
        assert body["image"] == [f"data:image/png;base64,{base64.b64encode(data).decode()}", "https://a.example/b.png"]
        assert body["sequential_image_generation"] == "auto"
        assert body["sequential_image_generation_options"] == {"max_images": 3}

    def test_documented_answer_is_finished_at_create_time(self):
        created = SEEDREAM.parse_create(spec("doubao-seedream-4-0"), ANSWER)
        result = created.immediate
        assert result is not None and result.state is UpstreamState.SUCCEEDED
        assert [(o.name, o.url) for o in result.outputs] == [("image", ANSWER["data"][0]["url"])]
        assert result.finished_at == datetime.fromtimestamp(1773314942, UTC)
        assert created.upstream_id == "doubao-seedream-4-0-250828@1773314942"

    def test_collector_reads_the_stored_create_body(self):
        outputs = SEEDREAM.parse_poll(spec("doubao-seedream-4-0"), "x", ANSWER).outputs
        assert [o.url for o in outputs] == [ANSWER["data"][0]["url"]]

    def test_inline_images_become_bytes(self):
        body = {**ANSWER, "data": [{"b64_json": base64.b64encode(b"one").decode()},
                                   {"b64_json": base64.b64encode(b"two").decode()}]}
        outputs = SEEDREAM.parse_poll(spec("doubao-seedream-4-0"), "x", body).outputs
        assert [(o.name, o.data) for o in outputs] == [("image_1", b"one"), ("image_2", b"two")]

    def test_answer_with_only_failed_images_is_a_failure(self):
        body = {**ANSWER, "data": [{"error": {"code": "OutputImageSensitiveContentDetected", "message": "sensitive"}}]}
        result = SEEDREAM.parse_create(spec("doubao-seedream-4-0"), body).immediate
        assert result is not None and result.state is UpstreamState.FAILED
        assert (result.error_code, result.error_message) == ("OutputImageSensitiveContentDetected", "sensitive")

    @pytest.mark.parametrize(("model", "raw", "field", "words"), [
        ("doubao-seedream-4-0", {"prompt": "x", "size": "8K"}, "input.size", "1K / 2K / 4K"),
        ("doubao-seedream-4-0", {"prompt": "x", "size": "512x512"}, "input.size", "921600"),
        ("doubao-seedream-4-0", {"prompt": "x", "size": "4096x240"}, "input.size", "aspect ratio"),
        ("doubao-seedream-4-5", {"prompt": "x", "size": "1K"}, "input.size", "2K / 4K"),
        ("doubao-seedream-4-0", {"prompt": "x", "images": ["https://a/b.png"] * 15}, "input.images", "at most 14"),
        ("doubao-seedream-4-0", {"prompt": "x", "images": ["https://a/b.png"] * 10, "max_images": 6},
         "input.max_images", "at most 5"),
        ("doubao-seedream-3-0-t2i", {"prompt": "x", "size": "4096x4096"}, "input.size", "512-2048"),
        ("doubao-seedream-3-0-t2i", {"prompt": "x", "images": ["https://a/b.png"]}, "input.images", "not supported"),
        ("doubao-seedream-3-0-t2i", {"prompt": "x", "guidance_scale": 20}, "input.guidance_scale", "1 to 10"),
    ])
    def test_invalid_input_names_the_field(self, model, raw, field, words):
        with pytest.raises(ValidationFailed) as caught:
            SEEDREAM.validate(spec(model), raw, no_records())
        messages = {e.field: e.message for e in caught.value.errors}
        assert field in messages, messages
        assert words.lower() in messages[field].lower()


class TestGptImageContract:
    def test_body_carries_the_fields_and_no_response_format(self):
        job_input = {"prompt": "p", "size": "1536x1024", "quality": "high", "n": 2, "output_format": "webp"}
        request = GPT_IMAGE.build_create(spec("gpt-image-1"), job_input, [], None)
        assert request.json == {"model": "gpt-image-1", **job_input}

    def test_b64_answer_is_stored_inline_with_its_format(self):
        body = {"created": 1773314942, "output_format": "webp",
                "data": [{"b64_json": base64.b64encode(b"webp-bytes").decode()}]}
        [image] = GPT_IMAGE.parse_create(spec("gpt-image-1"), body).immediate.outputs
        assert (image.name, image.data, image.content_type) == ("image", b"webp-bytes", "image/webp")

    @pytest.mark.parametrize(("raw", "field"), [
        ({"prompt": "x", "size": "800x600"}, "input.size"),
        ({"prompt": "x", "n": 11}, "input.n"),
        ({"prompt": "x", "background": "transparent", "output_format": "jpeg"}, "input.background"),
        ({"prompt": "x", "output_compression": 50}, "input.output_compression"),
    ])
    def test_invalid_input_names_the_field(self, raw, field):
        with pytest.raises(ValidationFailed) as caught:
            GPT_IMAGE.validate(spec("gpt-image-1"), raw, no_records())
        assert field in {e.field for e in caught.value.errors}


class TestEndToEnd:
    def test_seedream_set_of_images_is_copied_from_the_links(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "doubao-seedream-4-0", {"prompt": "a lighthouse in four seasons", "max_images": 2})
        assert job["status"] == "succeeded", job
        artifacts = {a["name"]: a for a in job["artifacts"]}
        assert set(artifacts) == {"image_1", "image_2"}
        task = task_with(emulator, "seedream", "four seasons")
        original = emulator.download(f"/cdn/seedream/{task['id']}/image-2.jpeg")
        assert http.get(artifacts["image_2"]["url"], headers=client.headers).content == original
        assert task["polls"] == 0  # nothing to poll: one call answered it all

    def test_gpt_image_b64_answer_is_stored_and_the_webhook_sent(self, http, make_client, emulator, receiver):
        client = make_client(webhook_url=receiver.url)
        created = submit(http, client, model="gpt-image-1", input={"prompt": "a lighthouse icon", "n": 2})
        job = wait_terminal(http, client, created["id"], timeout=90)
        assert job["status"] == "succeeded", job
        served = emulator.stats()["served_sha256"]
        task = task_with(emulator, "gpt_image", "a lighthouse icon")
        for number in (1, 2):
            artifact = next(a for a in job["artifacts"] if a["name"] == f"image_{number}")
            assert artifact["content_type"] == "image/png"
            assert artifact["sha256"] == served[f"{task['id']}:image-{number}.png"]
            stored = http.get(artifact["url"], headers=client.headers).content
            assert hashlib.sha256(stored).hexdigest() == artifact["sha256"]
        [hook] = receiver.wait_for_job(created["id"])
        assert hook.json["type"] == "job.succeeded"

    @pytest.mark.parametrize(("model", "code"), [("doubao-seedream-4-0", "InputTextSensitiveContentDetected"),
                                                 ("gpt-image-1", "moderation_blocked")])
    def test_upstream_refusal_is_failed_with_the_upstream_code(self, http, make_client, emulator, model, code):
        job = run_job(http, make_client(), model, {"prompt": "something sensitive [fail]"})
        assert job["status"] == "failed"
        assert (job["error"]["code"], job["error"]["source"]) == (code, "upstream")
        assert "request id" in job["error"]["message"]
