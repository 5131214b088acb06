"""Sora 2: the input rules (seconds and sizes per model, storyboards, image references,
-all characters, remixes), checked against the adapter directly. The API-level checks
(problem+json, nothing stored on a 422, real uploads) are in tests/test_validation.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.core.errors import ValidationFailed
from app.providers.base import ValidationContext
from app.providers.sora import ADAPTER
from tests.providers.video_support import no_records, spec


def validate(model: str = "sora-2", ctx: ValidationContext | None = None, **fields: Any) -> dict:
    return ADAPTER.validate(spec(model), fields, ctx or no_records())


def refused(field: str, *words: str, model: str = "sora-2", ctx: ValidationContext | None = None,
            **fields: Any) -> ValidationFailed:
    """The problem for `field`, whose messages contain every one of `words`."""
    with pytest.raises(ValidationFailed) as caught:
        validate(model, ctx, **fields)
    matching = [e for e in caught.value.errors if e.field == field]
    assert matching, f"no error for {field}: {caught.value.errors}"
    text = " ".join(e.message for e in matching).lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in {text!r}"
    return caught.value


def with_job(**fields: Any) -> ValidationContext:
    job = SimpleNamespace(**({"id": "job_parent", "model": "sora-2", "family": "sora", "status": "succeeded",
                              "upstream_id": "video_123"} | fields))
    return ValidationContext(client_id="cli_test", get_job=lambda _id: job, get_upload=lambda _id: None)


class TestSeconds:
    @pytest.mark.parametrize(("model", "seconds"), [
        ("sora-2", 10), ("sora-2-pro", 15), ("sora-2-all", 4), ("sora-2-all", 25), ("sora-2-pro-all", 12),
    ])
    def test_seconds_not_allowed_for_model(self, model, seconds):
        refused("input.seconds", "not allowed", model, model=model, prompt="x", seconds=seconds)

    @pytest.mark.parametrize(("model", "seconds"), [
        ("sora-2", "4"), ("sora-2", 12), ("sora-2-pro", 8), ("sora-2-all", 15), ("sora-2-pro-all", 25),
    ])
    def test_seconds_allowed(self, model, seconds):
        assert validate(model, prompt="x", seconds=seconds)["seconds"] == str(seconds)


class TestSize:
    def test_hd_size_refused_for_sora_2(self):
        refused("input.size", "not allowed", "720x1280", prompt="x", size="1792x1024")

    def test_hd_size_refused_for_sora_2_all(self):
        refused("input.size", model="sora-2-all", prompt="x", seconds=10, size="1024x1792")

    def test_hd_size_accepted_for_pro(self):
        assert validate("sora-2-pro", prompt="x", size="1792x1024")["size"] == "1792x1024"

    def test_defaults_are_filled_in(self):
        assert validate("sora-2-all", prompt="x") == {"prompt": "x", "seconds": "10", "size": "1280x720"}


class TestInputReference:
    def test_reference_must_be_upload_or_url(self):
        refused("input.input_reference", "upload id", prompt="x", input_reference="/etc/passwd")

    def test_url_reference_is_accepted_for_later_fetch(self):
        out = validate(prompt="x", input_reference="https://example.com/frame.png")
        assert out["input_reference"] == "https://example.com/frame.png"


class TestCharacter:
    def test_character_fields_only_on_all_models(self):
        problem = refused("input.character_url", "only the -all models", prompt="x",
                          character_url="https://v.example/a.mp4", character_timestamps="1,3")
        assert any(e.field == "input.character_timestamps" for e in problem.errors)

    def test_url_needs_timestamps(self):
        refused("input.character_timestamps", "together", model="sora-2-all", prompt="x",
                character_url="https://v.example/a.mp4")

    @pytest.mark.parametrize(("value", "words"), [
        ("1,1.5", ["1-3 s"]), ("0,4", ["1-3 s", "4"]), ("3,1", ["1-3 s"]), ("abc", ["start,end"]),
        ("1,2,3", ["start,end"]), ("-1,1", ["negative"]),
    ])
    def test_timestamps_range(self, value, words):
        refused("input.character_timestamps", *words, model="sora-2-all", prompt="x",
                character_url="https://v.example/a.mp4", character_timestamps=value)

    def test_valid_character(self):
        out = validate("sora-2-pro-all", prompt="x", seconds=15, character_url="https://v.example/a.mp4",
                       character_timestamps="2,4.5")
        assert out["character_timestamps"] == "2,4.5"


STORYBOARD = "Shot 1:\nduration: 7.5sec\nScene: a cat wakes up\n\nShot 2:\nduration: 7.5sec\nScene: the cat stretches"


def warnings_for(model: str, **fields: Any) -> list[tuple[str, str, str]]:
    job_input = validate(model, **fields)
    return [(w.field, w.code, w.message) for w in ADAPTER.input_warnings(spec(model), job_input)]


class TestStoryboard:
    def test_valid_storyboard(self):
        assert validate("sora-2-all", prompt=STORYBOARD, seconds=15)["prompt"] == STORYBOARD
        assert warnings_for("sora-2-all", prompt=STORYBOARD, seconds=15) == []

    def test_durations_that_do_not_add_up_are_accepted_with_a_warning(self):
        assert validate("sora-2-all", prompt=STORYBOARD, seconds=10)["seconds"] == "10"
        [(field, code, message)] = warnings_for("sora-2-all", prompt=STORYBOARD, seconds=10)
        assert (field, code) == ("prompt", "storyboard_duration_mismatch")
        assert "add up to 15 s (7.5 + 7.5) but seconds is 10" in message

    def test_shots_numbered_otherwise_are_accepted_with_a_warning(self):
        prompt = STORYBOARD.replace("Shot 2:", "Shot 3:")
        assert validate("sora-2-all", prompt=prompt, seconds=15)
        [(_field, code, message)] = warnings_for("sora-2-all", prompt=prompt, seconds=15)
        assert code == "storyboard_numbering" and "expected Shot 2" in message

    def test_missing_duration_names_the_shot(self):
        prompt = "Shot 1:\nduration: 10sec\nScene: a\n\nShot 2:\nScene: b"
        refused("input.prompt", "shot 2", "duration", model="sora-2-all", prompt=prompt, seconds=10)

    def test_bad_duration_value(self):
        prompt = "Shot 1:\nduration: ten seconds\nScene: a"
        refused("input.prompt", "shot 1", "ten seconds", model="sora-2-all", prompt=prompt, seconds=10)

    def test_missing_scene(self):
        prompt = "Shot 1:\nduration: 5sec\nScene: a\n\nShot 2:\nduration: 5sec\n"
        refused("input.prompt", "shot 2", "scene", model="sora-2-all", prompt=prompt, seconds=10)

    def test_an_official_model_takes_any_prompt(self):
        """No storyboard format is documented for the official models: a prompt is a prompt."""
        prompt = "Shot 1:\nduration: ten seconds\nScene: a\n\nShot 2:\nScene: b"
        assert validate(prompt=prompt, seconds=4)["prompt"] == prompt
        assert warnings_for("sora-2", prompt=STORYBOARD, seconds=4) == []

    def test_the_warning_lands_on_the_jobs_timeline(self, api, make_client):
        client = make_client()
        created = api.post("/v1/jobs", json={"model": "sora-2-all", "input": {"prompt": STORYBOARD, "seconds": 10}},
                           headers=client.headers)
        assert created.status_code == 202, created.text
        events = api.get(f"/v1/jobs/{created.json()['id']}/events", headers=client.headers).json()["data"]
        [warning] = [e for e in events if e["type"] == "input_warning"]
        assert warning["data"] == {"field": "input.prompt", "code": "storyboard_duration_mismatch"}
        assert "add up to 15" in warning["message"]


class TestAllFormatResult:
    FINISHED = {"id": "video_1", "object": "video", "status": "completed", "progress": 100}

    def test_the_download_url_is_used_when_the_answer_has_one(self):
        body = self.FINISHED | {"video_url": "https://filesystem.site/cdn/x.mp4"}
        result = ADAPTER.parse_poll(spec("sora-2-pro-all"), "video_1", body)
        assert [(o.name, o.url) for o in result.outputs] == [("video", "https://filesystem.site/cdn/x.mp4")]

    def test_otherwise_the_content_route_without_variants(self):
        result = ADAPTER.parse_poll(spec("sora-2-all"), "video_1", self.FINISHED)
        assert [(o.name, o.request.path) for o in result.outputs] == [("video", "/v1/videos/video_1/content")]

    def test_official_models_read_content_and_its_variants(self):
        body = self.FINISHED | {"video_url": "https://filesystem.site/cdn/x.mp4"}
        outputs = ADAPTER.parse_poll(spec("sora-2"), "video_1", body).outputs
        assert [o.name for o in outputs] == ["video", "thumbnail", "spritesheet"] and outputs[0].url is None

    def test_no_remix_for_the_all_format(self):
        refused("input.remix_of", "official", model="sora-2-all", ctx=with_job(model="sora-2-all"), prompt="y",
                remix_of="job_parent")


class TestRemixInput:
    def test_unknown_parent(self):
        refused("input.remix_of", "no job", prompt="x", remix_of="job_nope")

    def test_parent_must_have_succeeded(self):
        refused("input.remix_of", "canceled", "succeeded", ctx=with_job(status="canceled"), prompt="y",
                remix_of="job_parent")

    @pytest.mark.parametrize(("parent", "words"), [
        ({"family": "veo", "model": "veo3"}, ["veo3 job", "not a sora video"]),
        ({"model": "sora-2-pro"}, ["used sora-2-pro", "same model"]),
    ])
    def test_parent_must_be_a_video_of_the_same_model(self, parent, words):
        refused("input.remix_of", *words, ctx=with_job(**parent), prompt="y", remix_of="job_parent")

    def test_remix_takes_only_a_prompt(self):
        refused("input.seconds", "only a prompt", ctx=with_job(), prompt="y", remix_of="job_parent", seconds=8)

    def test_a_remix_stores_its_input_as_given(self):
        assert validate(ctx=with_job(), prompt="y", remix_of="job_parent") == {"prompt": "y", "remix_of": "job_parent"}
