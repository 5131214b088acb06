"""Suno: the adapter against the documented batch fetch and submit answers, the
three song modes and lyrics, several clips per task, and jobs through the real
pipeline (batched by action)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from app.core.errors import ValidationFailed
from app.providers.base import UpstreamState, ValidationContext
from app.providers.http import UpstreamError
from app.providers.suno import ADAPTER
from tests.helpers import get_job, submit, wait_terminal
from tests.providers.video_support import no_records, run_job, spec

# The batch fetch page's documented answer, with its field values filled in.
BATCH = {"code": "success", "message": "", "data": [{
    "task_id": "a1b2c3", "notify_hook": "", "action": "MUSIC", "status": "IN_PROGRESS", "fail_reason": "",
    "submit_time": 1773314942, "start_time": 1773314950, "finish_time": 0, "progress": "58%", "data": [],
}]}
# The submit answer of the same gateway family (third-party docs): the task id in `data`.
SUBMITTED = {"code": "success", "data": "a1b2c3", "message": ""}
# The documented bodies and answers themselves are tests/contracts/suno/*.json.


def clip(number: int) -> dict[str, Any]:
    return {"id": f"clip-{number}", "title": "Dawn", "status": "complete",
            "audio_url": f"https://cdn1.suno.ai/clip-{number}.mp3",
            "image_url": f"https://cdn2.suno.ai/image_{number}.jpeg",
            "image_large_url": f"https://cdn2.suno.ai/image_large_{number}.jpeg", "model_name": "chirp-v4"}


def finished(**fields: Any) -> dict[str, Any]:
    return {**BATCH["data"][0], "status": "SUCCESS", "progress": "100%", "finish_time": 1773315000,
            "data": [clip(1), clip(2)], **fields}


def parent_with_clips(**fields: Any) -> SimpleNamespace:
    base = {"id": "job_song", "model": "suno-v4", "family": "suno", "status": "succeeded",
            "upstream_id": "a1b2c3", "upstream_payload": finished()}
    return SimpleNamespace(**(base | fields))


def context(job: Any = None) -> ValidationContext:
    return ValidationContext(client_id="cli_test", get_job=lambda _id: job, get_upload=lambda _id: None)


class TestCreateContract:
    def test_inspiration_body(self):
        job_input = ADAPTER.validate(spec("suno-v4"), {"gpt_description_prompt": "a song about rain"}, no_records())
        request = ADAPTER.build_create(spec("suno-v4"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/suno/submit/music")
        assert request.json == {"mv": "chirp-v4", "gpt_description_prompt": "a song about rain",
                                "make_instrumental": False, "prompt": ""}

    def test_custom_body(self):
        raw = {"prompt": "[Verse] rain", "tags": "lo-fi", "title": "Rain"}
        job_input = ADAPTER.validate(spec("suno-v4.5"), raw, no_records())
        assert job_input["mode"] == "custom"
        body = ADAPTER.build_create(spec("suno-v4.5"), job_input, [], None).json
        assert body == {"mv": "chirp-auk", **raw, "make_instrumental": False}

    def test_continuation_of_a_generated_clip_sends_its_task_id_and_no_upload_extend(self):
        parent = parent_with_clips()
        raw = {"parent_job_id": "job_song", "continue_clip": 2, "continue_at": 62.5, "prompt": "[Bridge] more"}
        job_input = ADAPTER.validate(spec("suno-v4"), raw, context(parent))
        assert job_input["mode"] == "continuation" and job_input["continue_clip_id"] == "clip-2"
        body = ADAPTER.build_create(spec("suno-v4"), job_input, [], parent).json
        assert body == {"mv": "chirp-v4", "prompt": "[Bridge] more", "task_id": "a1b2c3",
                        "continue_clip_id": "clip-2", "continue_at": 62.5}

    def test_continuation_of_uploaded_audio_is_upload_extend_without_a_task_id(self):
        raw = {"continue_clip_id": "uploaded-clip", "continue_at": 12, "prompt": "[Verse] on"}
        job_input = ADAPTER.validate(spec("suno-v4"), raw, no_records())
        body = ADAPTER.build_create(spec("suno-v4"), job_input, [], None).json
        assert body == {"mv": "chirp-v4", "prompt": "[Verse] on", "continue_clip_id": "uploaded-clip",
                        "continue_at": 12, "task": "upload_extend"}

    def test_lyrics_body(self):
        request = ADAPTER.build_create(spec("suno-lyrics"), {"prompt": "a shanty"}, [], None)
        assert (request.path, request.json) == ("/suno/submit/lyrics", {"prompt": "a shanty"})

    def test_submit_answer_gives_data_as_task_id(self):
        assert ADAPTER.parse_create(spec("suno-v4"), SUBMITTED).upstream_id == "a1b2c3"

    def test_refusal_in_the_envelope_is_an_upstream_error(self):
        with pytest.raises(UpstreamError) as caught:
            ADAPTER.parse_create(spec("suno-v4"), {"code": "prompt_blocked", "message": "artist names", "data": None})
        assert caught.value.code == "suno_prompt_blocked" and "artist names" in caught.value.message


class TestPollContract:
    def test_documented_batch_answer_is_running_with_second_times(self):
        results = ADAPTER.parse_batch_poll(spec("suno-v4"), ["a1b2c3"], BATCH)
        result = results["a1b2c3"]
        assert (result.state, result.progress) == (UpstreamState.RUNNING, 58)
        assert result.started_at == datetime.fromtimestamp(1773314950, UTC)
        assert result.payload["task_id"] == "a1b2c3"

    def test_batch_request_carries_the_models_action(self):
        music = ADAPTER.build_batch_poll(spec("suno-v4"), ["a", "b"])
        lyrics = ADAPTER.build_batch_poll(spec("suno-lyrics"), ["c"])
        assert (music.method, music.path, music.json) == ("POST", "/suno/fetch", {"ids": ["a", "b"], "action": "MUSIC"})
        assert lyrics.json == {"ids": ["c"], "action": "LYRICS"}
        assert ADAPTER.batch_key(spec("suno-v4")) == ADAPTER.batch_key(spec("suno-v4.5")) != ADAPTER.batch_key(
            spec("suno-lyrics"))

    def test_single_fetch_envelope_is_unwrapped(self):
        result = ADAPTER.parse_poll(spec("suno-v4"), "a1b2c3", {"code": "success", "message": "", "data": finished()})
        assert result.state is UpstreamState.SUCCEEDED
        assert result.payload["task_id"] == "a1b2c3"

    def test_every_clip_is_an_artifact_named_by_its_position(self):
        outputs = {o.name: o for o in ADAPTER.parse_poll(spec("suno-v4"), "a1b2c3", finished()).outputs}
        assert set(outputs) == {"clip_1", "clip_2", "clip_1_cover", "clip_2_cover"}
        assert outputs["clip_2"].url == "https://cdn1.suno.ai/clip-2.mp3"
        assert outputs["clip_1_cover"].url == "https://cdn2.suno.ai/image_large_1.jpeg"
        assert outputs["clip_1_cover"].optional and not outputs["clip_1"].optional

    def test_lyrics_are_stored_from_the_answer(self):
        sheet_data = {"id": "l1", "title": "Keeper", "text": "[Verse] la", "status": "complete"}
        body = finished(action="LYRICS", data=sheet_data)
        [sheet] = ADAPTER.parse_poll(spec("suno-lyrics"), "a1b2c3", body).outputs
        assert sheet.name == "lyrics" and sheet.content_type == "application/json"
        assert json.loads(sheet.data) == {"title": "Keeper", "text": "[Verse] la"}

    def test_failure_keeps_fail_reason(self):
        result = ADAPTER.parse_poll(spec("suno-v4"), "a", finished(status="FAILURE", fail_reason="bad lyrics", data=[]))
        assert (result.state, result.error_message) == (UpstreamState.FAILED, "bad lyrics")

    def test_status_words_come_from_the_catalogue(self):
        corrected = spec("suno-v4", statuses={"DONE": "succeeded"})
        assert ADAPTER.parse_poll(corrected, "a", finished(status="DONE")).state is UpstreamState.SUCCEEDED
        assert ADAPTER.parse_poll(spec("suno-v4"), "a", finished(status="DONE")).state is UpstreamState.UNKNOWN


class TestValidation:
    @pytest.mark.parametrize(("model", "raw", "field", "words"), [
        ("suno-v4", {"prompt": "[Verse] x"}, "input.tags", "required in custom mode"),
        ("suno-v4", {"tags": "pop", "title": "t"}, "input.prompt", "lyrics are required"),
        ("suno-v4", {"gpt_description_prompt": "x", "tags": "pop"}, "input.tags", "not used in inspiration"),
        ("suno-v4", {"prompt": "x" * 3001, "tags": "pop", "title": "t"}, "input.prompt", "at most 3000"),
        ("suno-v4", {"mode": "continuation", "continue_clip_id": "c"}, "input.continue_at", "required"),
        ("suno-lyrics", {"prompt": "x", "tags": "pop"}, "input.tags", "not supported"),
    ])
    def test_invalid_input_names_the_field(self, model, raw, field, words):
        with pytest.raises(ValidationFailed) as caught:
            ADAPTER.validate(spec(model), raw, no_records())
        messages = {e.field: e.message for e in caught.value.errors}
        assert field in messages, messages
        assert words.lower() in messages[field].lower()

    def test_longer_lyrics_are_fine_for_v45(self):
        raw = {"prompt": "x" * 4000, "tags": "pop", "title": "t"}
        assert ADAPTER.validate(spec("suno-v4.5"), raw, no_records())["mode"] == "custom"

    def test_instrumental_custom_song_needs_no_lyrics(self):
        raw = {"tags": "ambient", "title": "Drift", "make_instrumental": True}
        assert ADAPTER.validate(spec("suno-v4"), raw, no_records())["mode"] == "custom"

    def test_continuation_of_a_missing_clip_is_refused(self):
        raw = {"parent_job_id": "job_song", "continue_clip": 3, "continue_at": 10}
        with pytest.raises(ValidationFailed) as caught:
            ADAPTER.validate(spec("suno-v4"), raw, context(parent_with_clips()))
        assert caught.value.errors[0].field == "input.continue_clip"
        assert "2 clip(s)" in caught.value.errors[0].message


class TestEndToEnd:
    def test_song_stores_every_clip_and_cover(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "suno-v4", {"gpt_description_prompt": "a song about a lighthouse"})
        assert job["status"] == "succeeded", job
        artifacts = {a["name"]: a for a in job["artifacts"]}
        assert set(artifacts) == {"clip_1", "clip_2", "clip_1_cover", "clip_2_cover"}
        assert artifacts["clip_1"]["content_type"] == "audio/mpeg"
        original = emulator.download(f"/cdn/suno/{job['upstream']['id']}/clip-2.mp3")
        assert http.get(artifacts["clip_2"]["url"], headers=client.headers).content == original

    def test_upstream_failure_is_failed_with_the_fail_reason(self, http, make_client, emulator):
        job = run_job(http, make_client(), "suno-v4", {"gpt_description_prompt": "sounds like a famous band [fail]"})
        assert job["status"] == "failed"
        assert (job["error"]["code"], job["error"]["source"]) == ("generation_failed", "upstream")
        assert "artist" in job["error"]["message"]

    def test_continuation_of_a_finished_song_extends_its_clip(self, http, make_client, emulator):
        client = make_client()
        song = run_job(http, client, "suno-v4", {"gpt_description_prompt": "a song to extend"})
        assert song["status"] == "succeeded", song
        more = run_job(http, client, "suno-v4", {"parent_job_id": song["id"], "continue_clip": 2, "continue_at": 60,
                                                 "prompt": "[Outro] fade away"})
        assert more["status"] == "succeeded", more
        assert more["parent_job_id"] == song["id"]
        [task] = [t for t in emulator.tasks() if t["id"] == more["upstream"]["id"]]
        parent_task = emulator.http.get(f"/suno/fetch/{song['upstream']['id']}",
                                        headers={"Authorization": f"Bearer {emulator.api_key}"}).json()["data"]
        assert task["params"]["continue_clip_id"] == parent_task["data"][1]["id"]
        assert (task["params"]["task_id"], task["params"]["continue_at"], task["params"]["task"]) == (
            song["upstream"]["id"], 60, None)

    def test_music_and_lyrics_in_flight_are_batched_by_action(self, http, make_client, emulator):
        emulator.configure(job_seconds=3)
        client = make_client()
        jobs = [submit(http, client, model="suno-v4", input={"gpt_description_prompt": f"song {i}"}) for i in range(3)]
        jobs.append(submit(http, client, model="suno-lyrics", input={"prompt": "a shanty"}))
        done = [wait_terminal(http, client, job["id"], timeout=90) for job in jobs]
        assert [d["status"] for d in done] == ["succeeded"] * 4, done
        stats = emulator.stats()
        for model in ("suno-v4", "suno-lyrics"):
            per_model = stats["per_model"][model]
            assert per_model["polls"] > 0 and per_model.get("batch_polls", 0) == per_model["polls"]
        assert stats["totals"]["batch_max_ids"] >= 2  # several jobs shared one call
        [lyrics] = get_job(http, client, jobs[-1]["id"])["artifacts"]
        sheet = http.get(lyrics["url"], headers=client.headers).json()
        assert lyrics["name"] == "lyrics" and "a shanty" in sheet["text"]
