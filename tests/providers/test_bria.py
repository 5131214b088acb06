"""Bria: the adapter against the documented status payload, edit operations and
their required fields, and jobs through the real pipeline."""

from __future__ import annotations

import base64

import pytest

from app.core.errors import ValidationFailed
from app.providers.base import UpstreamState
from app.providers.bria import ADAPTER
from tests.providers.video_support import (
    input_file,
    no_records,
    png,
    run_job,
    spec,
    task_with,
    upload,
)

# The status page's documented answer, with its field values filled in.
COMPLETED = {"result": {"seed": 1234567, "image_url": "https://temp.bria.ai/ab12/result.png",
                        "refined_prompt": "a lighthouse, golden hour"},
             "status": "COMPLETED", "request_id": "c7d2-11"}


class TestCreateContract:
    def test_generate_is_asynchronous(self):
        job_input = {"prompt": "a lighthouse", "aspect_ratio": "16:9"}
        request = ADAPTER.build_create(spec("bria-generate"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/bria/image/generate")
        assert request.json == {"prompt": "a lighthouse", "aspect_ratio": "16:9", "sync": False}

    def test_edit_operation_picks_the_path_and_uploads_go_as_bare_base64(self):
        data = png()
        job_input = {"operation": "gen_fill", "image": "upl_1", "mask": "https://a.example/mask.png",
                     "prompt": "a boat"}
        request = ADAPTER.build_create(spec("bria-edit"), job_input, [input_file("image", data)], None)
        assert request.path == "/bria/image/edit/gen_fill"
        assert request.json == {"image": base64.b64encode(data).decode(), "mask": "https://a.example/mask.png",
                                "prompt": "a boat", "sync": False}

    def test_create_answer_gives_the_request_id(self):
        answer = {"request_id": "c7d2-11", "status_url": "https://x/bria/c7d2-11"}
        assert ADAPTER.parse_create(spec("bria-edit"), answer).upstream_id == "c7d2-11"
        assert ADAPTER.build_poll(spec("bria-edit"), "c7d2-11").path == "/bria/c7d2-11"


class TestPollContract:
    def test_documented_completed_answer_collects_the_image(self):
        result = ADAPTER.parse_poll(spec("bria-edit"), "c7d2-11", COMPLETED)
        assert result.state is UpstreamState.SUCCEEDED
        assert [(o.name, o.url) for o in result.outputs] == [("image", "https://temp.bria.ai/ab12/result.png")]

    @pytest.mark.parametrize(("word", "state"), [("IN_PROGRESS", UpstreamState.RUNNING),
                                                 ("UNKNOWN", UpstreamState.UNKNOWN),
                                                 ("QUEUED_ON_MARS", UpstreamState.UNKNOWN)])
    def test_waiting_words(self, word, state):
        assert ADAPTER.parse_poll(spec("bria-edit"), "c", {"status": word, "request_id": "c"}).state is state

    def test_error_with_http_200_keeps_the_message(self):
        body = {"status": "ERROR", "request_id": "c", "error": {"code": 422, "message": "bad mask", "details": "x"}}
        result = ADAPTER.parse_poll(spec("bria-edit"), "c", body)
        assert (result.state, result.error_message) == (UpstreamState.FAILED, "bad mask")


class TestValidation:
    @pytest.mark.parametrize(("model", "raw", "field", "words"), [
        ("bria-edit", {"image": "https://a/x.png"}, "input.operation", "remove_background"),
        ("bria-edit", {"operation": "recolor", "image": "https://a/x.png"}, "input.operation", "gen_fill"),
        ("bria-edit", {"operation": "erase", "image": "https://a/x.png"}, "input.mask", "required by erase"),
        ("bria-edit", {"operation": "remove_background", "image": "https://a/x.png", "prompt": "x"},
         "input.prompt", "not supported"),
        ("bria-edit", {"operation": "remove_background", "image": "upl_missing"}, "input.image", "no upload"),
        ("bria-generate", {"prompt": "x", "aspect_ratio": "7:3"}, "input.aspect_ratio", "16:9"),
        ("bria-generate", {"aspect_ratio": "1:1"}, "input.prompt", "required"),
        ("bria-generate", {"prompt": "x", "image": "https://a/x.png"}, "input.image", "not supported"),
    ])
    def test_invalid_input_names_the_field(self, model, raw, field, words):
        with pytest.raises(ValidationFailed) as caught:
            ADAPTER.validate(spec(model), raw, no_records())
        messages = {e.field: e.message for e in caught.value.errors}
        assert field in messages, messages
        assert words.lower() in messages[field].lower()


class TestEndToEnd:
    def test_edit_of_an_uploaded_image_is_stored(self, http, make_client, emulator):
        client = make_client()
        picture = png(32, 32)
        upload_id = upload(http, client, picture)
        job = run_job(http, client, "bria-edit", {"operation": "gen_fill", "image": upload_id,
                                                  "mask": "https://masks.example/m.png", "prompt": "a red boat"})
        assert job["status"] == "succeeded", job
        [image] = job["artifacts"]
        original = emulator.download(f"/cdn/bria/{job['upstream']['id']}/result.png")
        assert http.get(image["url"], headers=client.headers).content == original
        params = task_with(emulator, "bria", "a red boat")["params"]
        assert (params["operation"], params["image_bytes"]) == ("gen_fill", len(picture))

    def test_upstream_failure_is_failed_with_the_error_message(self, http, make_client, emulator):
        job = run_job(http, make_client(), "bria-generate", {"prompt": "not allowed [fail]"})
        assert job["status"] == "failed"
        assert (job["error"]["code"], job["error"]["source"]) == ("generation_failed", "upstream")
        assert "moderation" in job["error"]["message"]
