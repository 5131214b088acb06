"""Bria: synchronous generate, edit by documented action, the edit status query, and
jobs through the real pipeline. The documented examples themselves are
tests/contracts/bria/*.json."""

from __future__ import annotations

import base64

import pytest

from app.core.errors import ValidationFailed
from app.providers.base import UpstreamState
from app.providers.bria import ADAPTER
from tests.contracts.fixtures import named
from tests.providers.video_support import (
    input_file,
    no_records,
    png,
    run_job,
    spec,
    task_with,
    upload,
)

GENERATED = named("bria/generate").response["json"]
COMPLETED = named("bria/query-completed").response["json"]


class TestGenerate:
    def test_generate_is_one_synchronous_call_to_text_to_image(self):
        request = ADAPTER.build_create(spec("bria-generate"), {"prompt": "a lighthouse", "aspect_ratio": "16:9"},
                                       [], None)
        assert (request.method, request.path) == ("POST", "/bria/text-to-image")
        assert request.json == {"prompt": "a lighthouse", "aspect_ratio": "16:9"}
        assert request.timeout == 110  # longer than a usual call; the submit lease covers it

    def test_the_answer_is_the_result(self):
        created = ADAPTER.parse_create(spec("bria-generate"), GENERATED)
        assert created.immediate is not None and created.immediate.state is UpstreamState.SUCCEEDED
        assert [(o.name, o.url) for o in created.immediate.outputs] == [("image", "https://example.com/generated.png")]

    def test_the_collector_rereads_the_stored_answer(self):
        result = ADAPTER.parse_poll(spec("bria-generate"), "27c39b06", GENERATED)
        assert [o.url for o in result.outputs] == ["https://example.com/generated.png"]

    def test_several_results_are_numbered(self):
        answer = {"result": [{"urls": ["https://a.example/1.png"], "seed": 1, "uuid": "u1"},
                             {"urls": ["https://a.example/2.png"], "seed": 2, "uuid": "u2"}]}
        outputs = ADAPTER.parse_create(spec("bria-generate"), answer).immediate.outputs
        assert [o.name for o in outputs] == ["image_1", "image_2"]

    def test_an_answer_without_images_fails_the_job(self):
        result = ADAPTER.parse_create(spec("bria-generate"), {"result": []}).immediate
        assert (result.state, result.error_code) == (UpstreamState.FAILED, "no_image")


class TestEdit:
    def test_the_action_picks_the_path_and_uploads_go_as_data_uris(self):
        data = png()
        job_input = {"operation": "gen_fill", "image": "upl_1", "mask": "https://a.example/mask.png",
                     "prompt": "a boat"}
        request = ADAPTER.build_create(spec("bria-edit"), job_input, [input_file("image", data)], None)
        assert request.path == "/bria/image/edit/gen_fill"
        assert request.json == {"image": "data:image/png;base64," + base64.b64encode(data).decode(),
                                "mask": "https://a.example/mask.png", "prompt": "a boat"}

    def test_sync_is_left_to_cometapi(self):
        request = ADAPTER.build_create(spec("bria-edit"), {"operation": "enhance", "image": "https://a.example/x.png"},
                                       [], None)
        assert "sync" not in request.json

    def test_the_answer_gives_the_request_id_polled_at_the_status_path(self):
        assert ADAPTER.parse_create(spec("bria-edit"), {"request_id": "c7d2-11"}).upstream_id == "c7d2-11"
        assert ADAPTER.build_poll(spec("bria-edit"), "c7d2-11").path == "/bria/c7d2-11"

    def test_documented_completed_answer_collects_the_image(self):
        result = ADAPTER.parse_poll(spec("bria-edit"), "x", COMPLETED)
        assert result.state is UpstreamState.SUCCEEDED
        assert [o.url for o in result.outputs] == [COMPLETED["result"]["image_url"]]

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
    def test_the_documented_actions_are_offered(self):
        assert sorted(spec("bria-edit").option("operations")) == [
            "enhance", "erase", "expand", "gen_fill", "increase_resolution", "replace_background"]

    @pytest.mark.parametrize(("model", "raw", "field", "words"), [
        ("bria-edit", {"image": "https://a/x.png"}, "input.operation", "erase"),
        ("bria-edit", {"operation": "remove_background", "image": "https://a/x.png"}, "input.operation",
         "not allowed"),
        ("bria-edit", {"operation": "erase", "image": "https://a/x.png"}, "input.mask", "required by erase"),
        ("bria-edit", {"operation": "gen_fill", "image": "https://a/x.png", "prompt": "p"}, "input.mask",
         "required by gen_fill"),
        ("bria-edit", {"operation": "expand", "image": "https://a/x.png"}, "input.mask", "required by expand"),
        ("bria-edit", {"operation": "replace_background", "image": "https://a/x.png"}, "input.prompt", "required"),
        ("bria-edit", {"operation": "enhance", "image": "https://a/x.png", "prompt": "x"}, "input.prompt",
         "not supported"),
        ("bria-edit", {"operation": "enhance", "image": "http://a/x.png"}, "input.image", "https"),
        ("bria-edit", {"operation": "enhance", "image": "upl_missing"}, "input.image", "no upload"),
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

    def test_the_example_is_cometapis_own_request(self):
        example = ADAPTER.example_input(spec("bria-edit"))
        request = ADAPTER.build_create(spec("bria-edit"), ADAPTER.validate(spec("bria-edit"), example, no_records()),
                                       [], None)
        documented = named("bria/edit-erase").request
        assert (request.path, request.json) == (documented["path"], documented["json"])


class TestEndToEnd:
    def test_generate_is_stored_from_the_synchronous_answer(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "bria-generate", {"prompt": "a lighthouse at dawn", "aspect_ratio": "16:9"})
        assert job["status"] == "succeeded", job["error"]
        [image] = job["artifacts"]
        task = task_with(emulator, "bria", "a lighthouse at dawn")
        original = emulator.download(f"/cdn/bria/{task['id']}/generated-0.png")
        assert http.get(image["url"], headers=client.headers).content == original
        assert task["polls"] == 0

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
        job = run_job(http, make_client(), "bria-edit", {"operation": "replace_background", "prompt": "not allowed [fail]",
                                                         "image": "https://a.example/x.png"})
        assert job["status"] == "failed"
        assert (job["error"]["code"], job["error"]["source"]) == ("generation_failed", "upstream")
        assert "moderation" in job["error"]["message"]

    def test_a_refused_generate_fails_with_the_upstreams_code(self, http, make_client, emulator):
        job = run_job(http, make_client(), "bria-generate", {"prompt": "not allowed [fail]"})
        assert job["status"] == "failed"
        assert (job["error"]["code"], job["error"]["source"]) == ("content_moderation", "upstream")
