"""Every Sora input rule is checked before anything is stored: a 422 problem
that names the field (or the storyboard shot) and says why."""

from __future__ import annotations

import io

import pytest
from PIL import Image


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def caller(api, make_client):
    return make_client()


def post(api, caller, model="sora-2", **input_fields):
    return api.post("/v1/jobs", json={"model": model, "input": input_fields}, headers=caller.headers)


def assert_422(response, field, *words):
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_error"
    matching = [e for e in body["errors"] if e["field"] == field]
    assert matching, f"no error for {field}: {body['errors']}"
    text = " ".join(e["message"] for e in matching).lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in {text!r}"
    return body


def job_count(api, caller):
    return len(api.get("/v1/jobs", headers=caller.headers).json()["data"])


class TestModelAndShape:
    def test_unknown_model(self, api, caller):
        assert_422(post(api, caller, model="sora-3", prompt="x"), "model", "unknown model", "sora-2")

    def test_missing_prompt(self, api, caller):
        assert_422(post(api, caller), "input.prompt", "required")

    def test_unknown_input_field(self, api, caller):
        assert_422(post(api, caller, prompt="x", fps=30), "input.fps", "extra")

    def test_nothing_is_stored_for_rejected_requests(self, api, caller):
        post(api, caller, prompt="x", seconds=5)
        post(api, caller, model="nope", prompt="x")
        assert job_count(api, caller) == 0


class TestSeconds:
    @pytest.mark.parametrize(("model", "seconds"), [
        ("sora-2", 10), ("sora-2-pro", 15), ("sora-2-all", 4), ("sora-2-all", 25), ("sora-2-pro-all", 12),
    ])
    def test_seconds_not_allowed_for_model(self, api, caller, model, seconds):
        assert_422(post(api, caller, model=model, prompt="x", seconds=seconds), "input.seconds", "not allowed", model)

    @pytest.mark.parametrize(("model", "seconds"), [
        ("sora-2", "4"), ("sora-2", 12), ("sora-2-pro", 8), ("sora-2-all", 15), ("sora-2-pro-all", 25),
    ])
    def test_seconds_allowed(self, api, caller, model, seconds):
        response = post(api, caller, model=model, prompt="x", seconds=seconds)
        assert response.status_code == 202, response.text
        assert response.json()["input"]["seconds"] == str(seconds)


class TestSize:
    def test_hd_size_refused_for_sora_2(self, api, caller):
        assert_422(post(api, caller, prompt="x", size="1792x1024"), "input.size", "not allowed", "720x1280")

    def test_hd_size_refused_for_sora_2_all(self, api, caller):
        assert_422(post(api, caller, model="sora-2-all", prompt="x", seconds=10, size="1024x1792"), "input.size")

    def test_hd_size_accepted_for_pro(self, api, caller):
        assert post(api, caller, model="sora-2-pro", prompt="x", size="1792x1024").status_code == 202

    def test_defaults_are_filled_in(self, api, caller):
        job = post(api, caller, model="sora-2-all", prompt="x").json()
        assert job["input"] == {"prompt": "x", "seconds": "10", "size": "1280x720"}


class TestInputReference:
    def upload(self, api, caller, data, name="ref.png", content_type="image/png"):
        response = api.post("/v1/uploads", files={"file": (name, data, content_type)}, headers=caller.headers)
        assert response.status_code == 201, response.text
        return response.json()

    def test_matching_image_upload_is_accepted(self, api, caller):
        upload = self.upload(api, caller, png(1280, 720))
        assert (upload["width"], upload["height"], upload["content_type"]) == (1280, 720, "image/png")
        response = post(api, caller, prompt="x", size="1280x720", input_reference=upload["id"])
        assert response.status_code == 202, response.text

    def test_dimensions_must_match_size(self, api, caller):
        upload = self.upload(api, caller, png(640, 480))
        assert_422(post(api, caller, prompt="x", size="1280x720", input_reference=upload["id"]),
                   "input.input_reference", "640x480", "1280x720")

    def test_upload_must_be_an_image(self, api, caller):
        upload = self.upload(api, caller, b"%PDF-1.4 not an image", "doc.pdf", "application/pdf")
        assert_422(post(api, caller, prompt="x", input_reference=upload["id"]), "input.input_reference", "image")

    def test_unknown_or_foreign_upload(self, api, caller, make_client):
        other = make_client("other")
        theirs = self.upload(api, other, png(1280, 720))
        assert_422(post(api, caller, prompt="x", input_reference=theirs["id"]), "input.input_reference", "no upload")

    def test_reference_must_be_upload_or_url(self, api, caller):
        assert_422(post(api, caller, prompt="x", input_reference="/etc/passwd"), "input.input_reference", "upload id")

    def test_url_reference_is_accepted_for_later_fetch(self, api, caller):
        assert post(api, caller, prompt="x", input_reference="https://example.com/frame.png").status_code == 202

    def test_empty_upload_is_refused(self, api, caller):
        response = api.post("/v1/uploads", files={"file": ("x.png", b"", "image/png")}, headers=caller.headers)
        assert response.status_code == 422


class TestCharacter:
    def test_character_fields_only_on_all_models(self, api, caller):
        body = assert_422(post(api, caller, prompt="x", character_url="https://v.example/a.mp4",
                               character_timestamps="1,3"), "input.character_url", "only the -all models")
        assert any(e["field"] == "input.character_timestamps" for e in body["errors"])

    def test_url_needs_timestamps(self, api, caller):
        assert_422(post(api, caller, model="sora-2-all", prompt="x", character_url="https://v.example/a.mp4"),
                   "input.character_timestamps", "together")

    @pytest.mark.parametrize(("value", "words"), [
        ("1,1.5", ["1-3 s"]), ("0,4", ["1-3 s", "4"]), ("3,1", ["1-3 s"]), ("abc", ["start,end"]),
        ("1,2,3", ["start,end"]), ("-1,1", ["negative"]),
    ])
    def test_timestamps_range(self, api, caller, value, words):
        assert_422(post(api, caller, model="sora-2-all", prompt="x", character_url="https://v.example/a.mp4",
                        character_timestamps=value), "input.character_timestamps", *words)

    def test_valid_character(self, api, caller):
        response = post(api, caller, model="sora-2-pro-all", prompt="x", seconds=15,
                        character_url="https://v.example/a.mp4", character_timestamps="2,4.5")
        assert response.status_code == 202, response.text


STORYBOARD = "Shot 1:\nduration: 7.5sec\nScene: a cat wakes up\n\nShot 2:\nduration: 7.5sec\nScene: the cat stretches"


class TestStoryboard:
    def test_valid_storyboard(self, api, caller):
        assert post(api, caller, model="sora-2-all", prompt=STORYBOARD, seconds=15).status_code == 202

    def test_durations_must_add_up_to_seconds(self, api, caller):
        body = assert_422(post(api, caller, model="sora-2-all", prompt=STORYBOARD, seconds=10),
                          "input.prompt", "add up to 15", "seconds is 10")
        assert "7.5 + 7.5" in body["detail"]

    def test_shots_numbered_from_one(self, api, caller):
        prompt = STORYBOARD.replace("Shot 2:", "Shot 3:")
        assert_422(post(api, caller, model="sora-2-all", prompt=prompt, seconds=15),
                   "input.prompt", "shot 2", "expected shot 2")

    def test_missing_duration_names_the_shot(self, api, caller):
        prompt = "Shot 1:\nduration: 10sec\nScene: a\n\nShot 2:\nScene: b"
        assert_422(post(api, caller, model="sora-2-all", prompt=prompt, seconds=10),
                   "input.prompt", "shot 2", "duration")

    def test_bad_duration_value(self, api, caller):
        prompt = "Shot 1:\nduration: ten seconds\nScene: a"
        assert_422(post(api, caller, model="sora-2-all", prompt=prompt, seconds=10), "input.prompt", "shot 1", "ten seconds")

    def test_missing_scene(self, api, caller):
        prompt = "Shot 1:\nduration: 5sec\nScene: a\n\nShot 2:\nduration: 5sec\n"
        assert_422(post(api, caller, model="sora-2-all", prompt=prompt, seconds=10), "input.prompt", "shot 2", "scene")

    def test_storyboard_on_official_model_uses_its_seconds(self, api, caller):
        prompt = "Shot 1:\nduration: 2sec\nScene: a\n\nShot 2:\nduration: 2sec\nScene: b"
        assert post(api, caller, prompt=prompt, seconds=4).status_code == 202
        assert_422(post(api, caller, prompt=prompt, seconds=8), "input.prompt", "add up to 4")


class TestRemixInput:
    def test_unknown_parent(self, api, caller):
        assert_422(post(api, caller, prompt="x", remix_of="job_nope"), "input.remix_of", "no job")

    def test_parent_must_have_succeeded(self, api, caller):
        parent = post(api, caller, prompt="x").json()
        api.post(f"/v1/jobs/{parent['id']}/cancel", headers=caller.headers)
        assert_422(post(api, caller, prompt="y", remix_of=parent["id"]), "input.remix_of", "canceled", "succeeded")

    def test_remix_takes_only_a_prompt(self, api, caller):
        parent = post(api, caller, prompt="x").json()
        assert_422(post(api, caller, prompt="y", remix_of=parent["id"], seconds=8), "input.seconds", "only a prompt")


class TestWebhookUrl:
    @pytest.mark.parametrize("url", [
        "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/x", "http://metadata.google.internal/",
        "ftp://example.com/x", "http://user:pw@example.com/",
    ])
    def test_unsafe_webhook_urls_are_refused(self, api, caller, url):
        response = api.post("/v1/jobs", json={"model": "sora-2", "input": {"prompt": "x"}, "webhook_url": url},
                            headers=caller.headers)
        body = assert_422(response, "webhook_url")
        assert body["errors"][0]["code"] == "unsafe_url"
