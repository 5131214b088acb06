"""Runway: the documented create rules (https-only images, an upload as a signed link
to our own API, prompt and seed limits, the version header), both documented answers
of the task query (Runway's own and CometAPI's wrapper), and jobs through the real
pipeline. The documented examples themselves are tests/contracts/runway/*.json."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from app.artifacts import links
from app.core.clock import utcnow
from app.providers.base import InputFile, UpstreamState
from app.providers.runway import ADAPTER
from emulator.app import create_app as create_emulator
from emulator.state import Config
from tests.conftest import TMP
from tests.providers.video_support import (
    no_records,
    png,
    run_job,
    spec,
    task_with,
)
from tests.support.stack import Stack
from tests.support.waiting import wait_for

# Runway's own task, as documented on the official-format query page.
RAW_SUCCEEDED = {"id": "d2e3a1c4-5b6f-4a7e-9c8d-0e1f2a3b4c5d", "status": "SUCCEEDED",
                 "createdAt": "2026-03-13T08:15:30.123Z", "output": ["https://dnznrvs05pmza.cloudfront.net/x.mp4"]}
# CometAPI's wrapper, as observed live on 2026-03-13 and documented on the same page.
WRAPPED_QUEUED = {"code": "success", "message": "", "data": {
    "task_id": "d2e3a1c4-5b6f-4a7e-9c8d-0e1f2a3b4c5d", "action": "IMAGE_TO_VIDEO", "status": "QUEUED",
    "fail_reason": "", "submit_time": 1773389730, "start_time": 0, "finish_time": 0, "progress": "0%",
    "data": {"id": "d2e3a1c4-5b6f-4a7e-9c8d-0e1f2a3b4c5d", "status": "PENDING", "createdAt": "2026-03-13T08:15:30.123Z"}}}


def wrapped(outer_status: str, progress: str, **raw):
    data = {**WRAPPED_QUEUED["data"], "status": outer_status, "progress": progress,
            "data": {**WRAPPED_QUEUED["data"]["data"], **raw}}
    return {**WRAPPED_QUEUED, "data": data}


class TestCreateContract:
    def test_image_to_video_body_maps_fields_to_runway_keys(self):
        job_input = {"prompt": "leaves drift", "image": "https://a.example/f.jpg", "ratio": "720:1280",
                     "duration": 10, "seed": 7}
        request = ADAPTER.build_create(spec("runway-gen4-turbo"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/runwayml/v1/image_to_video")
        assert request.json == {"model": "gen4_turbo", "promptText": "leaves drift", "promptImage":
                                "https://a.example/f.jpg", "ratio": "720:1280", "duration": 10, "seed": 7}
        assert request.headers == {"X-Runway-Version": "2024-11-06"}

    def test_an_upload_goes_as_the_signed_link_the_pipeline_made(self):
        link = "https://jobs.example.com/v1/uploads/upl_1/content?expires=1&signature=ab"
        frame = InputFile("image", "f.png", "image/png", lambda: io.BytesIO(png()), url=link)
        request = ADAPTER.build_create(spec("runway-gen4-turbo"), {"image": "upl_1", "ratio": "1280:720",
                                       "duration": 5}, [frame], None)
        assert request.json["promptImage"] == link
        assert ADAPTER.input_links(spec("runway-gen4-turbo"), {"image": "upl_1"}) == [("image", "upl_1")]
        assert ADAPTER.input_files(spec("runway-gen4-turbo"), {"image": "upl_1"}) == []

    def test_every_call_sends_the_version_header(self):
        assert ADAPTER.build_poll(spec("runway-upscale"), "t").headers == {"X-Runway-Version": "2024-11-06"}

    def test_video_to_video_and_upscale_bodies(self):
        aleph = ADAPTER.build_create(spec("runway-gen4-aleph"), {"prompt": "snow", "video": "https://a.example/v.mp4",
                                     "ratio": "1280:720", "references": ["https://a.example/s.png"]}, [], None)
        assert aleph.path == "/runwayml/v1/video_to_video"
        assert aleph.json["videoUri"] == "https://a.example/v.mp4"
        assert aleph.json["references"] == [{"type": "image", "uri": "https://a.example/s.png"}]
        upscale = ADAPTER.build_create(spec("runway-upscale"), {"video": "https://a.example/v.mp4"}, [], None)
        assert (upscale.path, upscale.json) == ("/runwayml/v1/video_upscale",
                                                {"model": "upscale_v1", "videoUri": "https://a.example/v.mp4"})

    def test_body_keys_are_catalogue_configuration(self):
        corrected = spec("runway-gen4-turbo", body={"prompt": "prompt_text", "image": "image_url"})
        body = ADAPTER.build_create(corrected, {"prompt": "p", "image": "https://a.example/f.jpg"}, [], None).json
        assert body == {"model": "gen4_turbo", "prompt_text": "p", "image_url": "https://a.example/f.jpg"}

    @pytest.mark.parametrize("answer", [{"id": "abc"}, {"code": "success", "data": "abc"},
                                        {"code": "success", "data": {"task_id": "abc"}}])
    def test_create_answer_in_either_shape_gives_the_id(self, answer):
        assert ADAPTER.parse_create(spec("runway-gen4-turbo"), answer).upstream_id == "abc"


class TestPollContract:
    def test_raw_succeeded_collects_output_with_iso_time(self):
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d2e3", RAW_SUCCEEDED)
        assert result.state is UpstreamState.SUCCEEDED
        assert [(o.name, o.url) for o in result.outputs] == [("video", "https://dnznrvs05pmza.cloudfront.net/x.mp4")]
        assert result.started_at == datetime(2026, 3, 13, 8, 15, 30, 123000, tzinfo=UTC)

    def test_raw_running_progress_is_a_fraction(self):
        body = {"id": "d", "status": "RUNNING", "progress": 0.58, "createdAt": "2026-03-13T08:15:30Z"}
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", body)
        assert (result.state, result.progress) == (UpstreamState.RUNNING, 58)

    def test_raw_failure_keeps_code_and_reason(self):
        body = {"id": "d", "status": "FAILED", "failure": "The prompt did not pass moderation",
                "failureCode": "SAFETY.INPUT.TEXT"}
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", body)
        assert (result.state, result.error_code, result.error_message) == (
            UpstreamState.FAILED, "SAFETY.INPUT.TEXT", "The prompt did not pass moderation")

    def test_wrapped_queued_is_pending_with_zero_percent(self):
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d2e3", WRAPPED_QUEUED)
        assert (result.state, result.progress) == (UpstreamState.PENDING, 0)
        assert result.started_at == datetime.fromtimestamp(1773389730, UTC)

    def test_wrapped_success_reads_the_nested_output(self):
        body = wrapped("SUCCESS", "100%", status="SUCCEEDED", output=["https://c.example/w.mp4"])
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d2e3", body)
        assert result.state is UpstreamState.SUCCEEDED
        assert [o.url for o in result.outputs] == ["https://c.example/w.mp4"]

    def test_wrapped_success_falls_back_to_result_url(self):
        body = wrapped("SUCCESS", "100%")
        body["data"]["result_url"] = "https://c.example/r.mp4"
        assert [o.url for o in ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", body).outputs] == [
            "https://c.example/r.mp4"]

    def test_wrapped_failure_reason(self):
        body = wrapped("FAILURE", "100%", status="FAILED", failureCode="INPUT_PREPROCESSING.SAFETY.TEXT")
        body["data"]["fail_reason"] = "content moderation"
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", body)
        assert (result.state, result.error_code, result.error_message) == (
            UpstreamState.FAILED, "INPUT_PREPROCESSING.SAFETY.TEXT", "content moderation")

    def test_task_not_exist_means_keep_polling(self):
        result = ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", {"code": "task_not_exist", "message":
                                    "task_not_exist", "data": None})
        assert (result.state, result.raw_status) == (UpstreamState.PENDING, "task_not_exist")

    def test_unknown_status_word_means_keep_polling(self):
        assert ADAPTER.parse_poll(spec("runway-gen4-turbo"), "d", {"id": "d", "status": "WARMING"}).state is (
            UpstreamState.UNKNOWN)


def post(api, client, model, **fields):
    return api.post("/v1/jobs", json={"model": model, "input": fields}, headers=client.headers)


def fields_in(response):
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def refusals(model, **fields):
    from app.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        ADAPTER.validate(spec(model), fields, no_records())
    return {e.field: (e.code, e.message) for e in caught.value.errors}


class TestValidation:
    def test_defaults_are_filled_in(self):
        out = ADAPTER.validate(spec("runway-gen4-turbo"), {"image": "https://a.example/f.jpg"}, no_records())
        assert out == {"image": "https://a.example/f.jpg", "ratio": "1280:720", "duration": 5}

    def test_image_to_video_needs_an_image_and_a_known_ratio(self, api, make_client):
        errors = fields_in(post(api, make_client(), "runway-gen4-turbo", prompt="p", ratio="16:9"))
        assert set(errors) == {"input.image", "input.ratio"}

    def test_upscale_takes_only_an_https_video_url(self, api, make_client):
        errors = fields_in(post(api, make_client(), "runway-upscale", video="http://a.example/v.mp4", prompt="p"))
        assert set(errors) == {"input.video", "input.prompt"}
        assert "https" in errors["input.video"]

    def test_images_are_https_urls_only(self):
        errors = refusals("runway-gen4-aleph", prompt="p", video="https://a.example/v.mp4",
                          references=["http://a.example/s.png"])
        assert errors["input.references.0"][0] == "invalid_reference"
        assert "input.image" in refusals("runway-gen4-turbo", image="http://a.example/f.jpg")

    @pytest.mark.parametrize(("model", "fields", "field"), [
        ("runway-gen4-turbo", {"image": "https://a.example/f.jpg", "prompt": "x" * 513}, "input.prompt"),
        ("runway-gen4-turbo", {"image": "https://a.example/f.jpg", "seed": 1_000_000_000}, "input.seed"),
        ("runway-gen4-aleph", {"video": "https://a.example/v.mp4", "prompt": "x" * 1001}, "input.prompt"),
        ("runway-gen4-aleph", {"video": "https://a.example/v.mp4", "prompt": "p", "seed": 4_294_967_296},
         "input.seed"),
    ])
    def test_the_documented_prompt_and_seed_limits(self, model, fields, field):
        assert field in refusals(model, **fields)

    def test_the_limits_differ_per_task(self):
        long_prompt = "x" * 1000
        out = ADAPTER.validate(spec("runway-gen4-aleph"), {"video": "https://a.example/v.mp4", "prompt": long_prompt,
                                                          "seed": 4_294_967_295}, no_records())
        assert out["prompt"] == long_prompt

    def test_an_upload_is_refused_while_the_public_base_url_is_not_https(self, api, make_client):
        client = make_client()
        frame = api.post("/v1/uploads", files={"file": ("f.png", png(), "image/png")}, headers=client.headers)
        response = post(api, client, "runway-gen4-turbo", image=frame.json()["id"])
        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert (error["field"], error["code"]) == ("input.image", "public_base_url_not_https")
        assert "COMETJOBS_PUBLIC_BASE_URL" in error["message"]


class TestSignedUploadLink:
    def stored(self, api, make_client) -> tuple[str, bytes]:
        data = png(40, 30)
        made = api.post("/v1/uploads", files={"file": ("f.png", data, "image/png")}, headers=make_client().headers)
        return made.json()["id"], data

    def test_the_link_serves_the_upload_without_an_api_key(self, api, make_client):
        upload_id, data = self.stored(api, make_client)
        link = urlsplit(links.signed_url(upload_id, utcnow()))
        response = api.get(f"{link.path}?{link.query}")
        assert response.status_code == 200
        assert (response.content, response.headers["content-type"]) == (data, "image/png")

    def test_a_tampered_or_expired_link_is_refused(self, api, make_client):
        upload_id, _ = self.stored(api, make_client)
        expires = int((utcnow() + timedelta(minutes=5)).timestamp())
        tampered = api.get(f"/v1/uploads/{upload_id}/content",
                           params={"expires": expires + 1, "signature": links.signature(upload_id, expires)})
        past = int((utcnow() - timedelta(seconds=1)).timestamp())
        expired = api.get(f"/v1/uploads/{upload_id}/content",
                          params={"expires": past, "signature": links.signature(upload_id, past)})
        forged = api.get(f"/v1/uploads/{upload_id}/content", params={"expires": expires, "signature": "\u0083"})
        for response in (tampered, expired, forged):
            assert (response.status_code, response.json()["code"]) == (403, "invalid_link")

    def test_the_link_lasts_an_hour(self):
        now = datetime(2026, 11, 30, 12, tzinfo=UTC)
        query = dict(part.split("=") for part in urlsplit(links.signed_url("upl_x", now)).query.split("&"))
        assert int(query["expires"]) == int((now + timedelta(hours=1)).timestamp())


class TestEmulatorRules:
    @pytest.fixture
    def runway(self):
        with TestClient(create_emulator(Config(job_seconds=0))) as client:
            yield client

    def test_the_version_header_is_required(self, runway):
        body = {"promptImage": "https://a.example/f.jpg", "model": "gen4_turbo"}
        assert runway.post("/runwayml/v1/image_to_video", json=body).status_code == 400
        ok = runway.post("/runwayml/v1/image_to_video", json=body, headers={"X-Runway-Version": "2024-11-06"})
        assert ok.status_code == 200 and set(ok.json()) == {"id"}

    @pytest.mark.parametrize("body", [
        {"promptImage": "http://a.example/f.jpg", "model": "gen4_turbo"},
        {"promptImage": "data:image/png;base64,iVBORw0KGgo=", "model": "gen4_turbo"},
        {"promptImage": "https://a.example/f.jpg", "model": "gen4_turbo", "promptText": "x" * 513},
        {"promptImage": "https://a.example/f.jpg", "model": "gen4_turbo", "seed": 1_000_000_000},
    ])
    def test_what_the_docs_do_not_allow_is_refused(self, runway, body):
        response = runway.post("/runwayml/v1/image_to_video", json=body, headers={"X-Runway-Version": "2024-11-06"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


class TestEndToEnd:
    def test_image_to_video_from_an_https_url_through_both_answer_shapes(self, http, make_client, emulator):
        emulator.configure(job_seconds=3)  # long enough for several polls, however busy the machine
        client = make_client()
        job = run_job(http, client, "runway-gen4-turbo", {"prompt": "a lantern sways",
                                                          "image": "https://images.example.com/f.jpg", "duration": 10})
        assert job["status"] == "succeeded", job
        assert [a["name"] for a in job["artifacts"]] == ["video"]
        task = task_with(emulator, "runway", "a lantern sways")
        assert task["params"]["prompt_image"] == "https://images.example.com/f.jpg"
        assert task["params"]["version"] == "2024-11-06"
        assert task["polls"] >= 3  # task_not_exist first, then the two shapes in turn

    def test_upstream_failure_is_failed_with_the_upstream_reason(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "runway-gen4-aleph", {"prompt": "something forbidden [fail]",
                                                          "video": "https://a.example/v.mp4"})
        assert job["status"] == "failed"
        assert job["error"]["source"] == "upstream"
        assert job["error"]["message"] == "The prompt did not pass Runway's content moderation"


@pytest.fixture
def https_stack(database):
    """A deployment whose PUBLIC_BASE_URL is https (it needs no certificate here: the
    emulator only checks the link's scheme, and the test fetches the link's path itself)."""
    stack = Stack("runway_https", TMP, dict(os.environ),
                  overrides={"COMETJOBS_PUBLIC_BASE_URL": "https://cometjobs.example.com"})
    try:
        stack.create_database()
        stack.start_emulator()
        stack.start_api()
        stack.start_worker()
        stack.start_scheduler()
        stack.emulator.configure(job_seconds=1)
        yield stack
    finally:
        stack.stop()


class TestUploadAsSignedLink:
    def test_an_upload_reaches_runway_as_a_signed_https_link_that_serves_its_bytes(self, https_stack):
        stack = https_stack
        client = stack.create_client()
        frame = png(48, 27)
        made = stack.http.post("/v1/uploads", files={"file": ("f.png", frame, "image/png")}, headers=client["headers"])
        created = stack.http.post("/v1/jobs", json={"model": "runway-gen4-turbo", "input": {
            "prompt": "a kite over dunes", "image": made.json()["id"]}}, headers=client["headers"])
        assert created.status_code == 202, created.text
        job = wait_for(lambda: (lambda j: j if j["status"] in ("succeeded", "failed") else None)(
            stack.http.get(f"/v1/jobs/{created.json()['id']}", headers=client["headers"]).json()),
            timeout=90, message=lambda: f"the job to finish\n{stack.logs()}")
        assert job["status"] == "succeeded", job["error"]
        [task] = [t for t in stack.emulator.tasks() if t["prompt"] == "a kite over dunes"]
        link = urlsplit(task["params"]["prompt_image"])
        assert (link.scheme, link.netloc, link.path) == ("https", "cometjobs.example.com",
                                                         f"/v1/uploads/{made.json()['id']}/content")
        fetched = httpx.get(f"{stack.http.base_url}{link.path}?{link.query}")  # no API key
        assert (fetched.status_code, fetched.content) == (200, frame)
