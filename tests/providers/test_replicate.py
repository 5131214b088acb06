"""Replicate: the adapter against the documented prediction payloads, any
owner/model, and jobs through the real pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.core.errors import ValidationFailed
from app.providers.base import UpstreamState
from app.providers.replicate import ADAPTER
from tests.providers.video_support import no_records, run_job, spec

# The create page's documented answer, with its field values filled in.
CREATED = {
    "id": "rp-9x8y", "model": "black-forest-labs/flux-schnell", "version": "dp-4d0b",
    "input": {"prompt": "a lighthouse"},
    "logs": "", "output": None, "error": None, "status": "starting", "created_at": "2026-03-12T10:00:00.000Z",
    "urls": {"get": "https://api.replicate.com/v1/predictions/rp-9x8y",
             "cancel": "https://api.replicate.com/v1/predictions/rp-9x8y/cancel",
             "stream": "https://stream.replicate.com/v1/files/rp-9x8y", "web": "https://replicate.com/p/rp-9x8y"},
}
# The query page's documented fields.
SUCCEEDED = {**CREATED, "status": "succeeded", "output": ["https://replicate.delivery/xezq/out-0.webp",
                                                          "https://replicate.delivery/xezq/out-1.webp"],
             "metrics": {"image_count": 2, "predict_time": 1.9}, "started_at": "2026-03-12T10:00:01.5Z",
             "completed_at": "2026-03-12T10:00:03.400000Z"}


class TestCreateContract:
    def test_any_model_named_in_the_input(self):
        job_input = {"model": "stability-ai/sdxl", "input": {"prompt": "x", "width": 768}}
        request = ADAPTER.build_create(spec("replicate"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/replicate/v1/models/stability-ai/sdxl/predictions")
        assert request.json == {"input": {"prompt": "x", "width": 768}}

    def test_pinned_model_uses_its_upstream_name(self):
        request = ADAPTER.build_create(spec("black-forest-labs/flux-schnell"), {"input": {"prompt": "x"}}, [], None)
        assert request.path == "/replicate/v1/models/black-forest-labs/flux-schnell/predictions"

    def test_documented_create_answer_gives_the_id_and_is_not_polled_via_urls(self):
        created = ADAPTER.parse_create(spec("replicate"), CREATED)
        assert (created.upstream_id, created.immediate) == ("rp-9x8y", None)
        assert ADAPTER.build_poll(spec("replicate"), "rp-9x8y").path == "/replicate/v1/predictions/rp-9x8y"


class TestPollContract:
    def test_success_collects_each_output_with_iso_times(self):
        result = ADAPTER.parse_poll(spec("replicate"), "rp-9x8y", SUCCEEDED)
        assert result.state is UpstreamState.SUCCEEDED
        assert [(o.name, o.url) for o in result.outputs] == [("output_1", SUCCEEDED["output"][0]),
                                                            ("output_2", SUCCEEDED["output"][1])]
        assert result.started_at == datetime(2026, 3, 12, 10, 0, 1, 500000, UTC)
        assert result.finished_at == datetime(2026, 3, 12, 10, 0, 3, 400000, UTC)

    @pytest.mark.parametrize(("output", "names"), [("https://r.delivery/a.mp4", ["output"]),
                                                   ({"audio": "https://r.delivery/a.wav"}, ["output_audio"])])
    def test_single_and_named_outputs(self, output, names):
        result = ADAPTER.parse_poll(spec("replicate"), "r", {**SUCCEEDED, "output": output})
        assert [o.name for o in result.outputs] == names

    def test_processing_reads_progress_from_the_logs(self):
        logs = "Using seed: 1\n 20%|##        | 10/50\n 58%|#####     | 29/50"
        result = ADAPTER.parse_poll(spec("replicate"), "r", {**CREATED, "status": "processing", "logs": logs})
        assert (result.state, result.progress) == (UpstreamState.RUNNING, 58)

    def test_starting_is_pending(self):
        assert ADAPTER.parse_poll(spec("replicate"), "r", CREATED).state is UpstreamState.PENDING

    def test_failure_keeps_the_error(self):
        result = ADAPTER.parse_poll(spec("replicate"), "r", {**CREATED, "status": "failed", "error": "CUDA OOM"})
        assert (result.state, result.error_message) == (UpstreamState.FAILED, "CUDA OOM")

    def test_unknown_status_word_means_keep_polling(self):
        result = ADAPTER.parse_poll(spec("replicate"), "r", {**CREATED, "status": "booting"})
        assert result.state is UpstreamState.UNKNOWN


class TestValidation:
    @pytest.mark.parametrize(("model", "raw", "field", "words"), [
        ("replicate", {"input": {"prompt": "x"}}, "input.model", "owner/name"),
        ("replicate", {"model": "Not A Model", "input": {}}, "input.model", "owner/name"),
        ("black-forest-labs/flux-schnell", {"input": {}}, "input.input.prompt", "required"),
        ("black-forest-labs/flux-schnell", {"model": "a/b", "input": {"prompt": "x"}}, "input.model",
         "leave model out"),
    ])
    def test_invalid_input_names_the_field(self, model, raw, field, words):
        with pytest.raises(ValidationFailed) as caught:
            ADAPTER.validate(spec(model), raw, no_records())
        messages = {e.field: e.message for e in caught.value.errors}
        assert field in messages, messages
        assert words.lower() in messages[field].lower()

    def test_owners_can_be_restricted_in_the_catalogue(self):
        with pytest.raises(ValidationFailed):
            ADAPTER.validate(spec("replicate", allowed_owners=["black-forest-labs"]),
                             {"model": "stability-ai/sdxl", "input": {}}, no_records())


class TestEndToEnd:
    def test_any_model_stores_every_output(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "replicate", {"model": "stability-ai/sdxl",
                                                  "input": {"prompt": "a lighthouse", "num_outputs": 2}})
        assert job["status"] == "succeeded", job
        artifacts = {a["name"]: a for a in job["artifacts"]}
        assert set(artifacts) == {"output_1", "output_2"}
        assert artifacts["output_1"]["content_type"] == "image/webp"
        original = emulator.download(f"/cdn/replicate/{job['upstream']['id']}/out-1.webp")
        assert http.get(artifacts["output_2"]["url"], headers=client.headers).content == original
        assert [t["model"] for t in emulator.tasks()] == ["stability-ai/sdxl"]

    def test_upstream_failure_is_failed_with_the_error(self, http, make_client, emulator):
        job = run_job(http, make_client(), "black-forest-labs/flux-schnell", {"input": {"prompt": "x [fail]"}})
        assert job["status"] == "failed"
        assert (job["error"]["code"], job["error"]["source"]) == ("generation_failed", "upstream")
        assert "NSFW" in job["error"]["message"]
