"""Input problems are refused through the API before anything is stored: a 422
problem+json that names the field and says why. Here: what needs the API (the model
lookup, the input's shape, uploads, webhook URLs); the Sora input rules themselves are
tested against the adapter in tests/providers/test_sora.py."""

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

    def test_an_unknown_model_suggests_the_closest_ids_once(self, api, caller):
        body = post(api, caller, model="Sora2", prompt="x").json()
        assert body["detail"].startswith("unknown model 'Sora2'; did you mean sora-2, ")
        assert "GET /v1/models lists all" in body["detail"] and "kling" not in body["detail"]
        assert body["errors"][0]["message"] == body["detail"]
        far = post(api, caller, model="zzz", prompt="x").json()["errors"][0]["message"]
        assert far.startswith("unknown model 'zzz'; GET /v1/models lists all ")

    def test_missing_prompt(self, api, caller):
        assert_422(post(api, caller), "input.prompt", "required")

    def test_unknown_input_field(self, api, caller):
        assert_422(post(api, caller, prompt="x", fps=30), "input.fps", "extra")

    def test_nothing_is_stored_for_rejected_requests(self, api, caller):
        post(api, caller, prompt="x", seconds=5)
        post(api, caller, model="nope", prompt="x")
        assert job_count(api, caller) == 0


class TestUploadedReference:
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

    def test_empty_upload_is_refused(self, api, caller):
        response = api.post("/v1/uploads", files={"file": ("x.png", b"", "image/png")}, headers=caller.headers)
        assert response.status_code == 422


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
