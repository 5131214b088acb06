"""Midjourney: the adapter against CometAPI's documented payloads, follow-up actions
chosen by button label, batch polling, and jobs through the real pipeline."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from app.core.errors import ValidationFailed
from app.providers.base import UpstreamState, ValidationContext
from app.providers.http import UpstreamError
from app.providers.midjourney import ADAPTER
from tests.helpers import get_job, submit, wait_terminal
from tests.providers.video_support import no_records, run_job, spec
from tests.support.waiting import wait_for

# The imagine page's documented answer, verbatim (its `properties` left empty).
SUBMITTED = {"code": 1, "description": "Submission successful", "result": "1773314942177684", "properties": {}}


def task(**fields: Any) -> dict[str, Any]:
    """A fetch answer with the fields the fetch-single-task page documents."""
    return {
        "id": "1773314942177684", "action": "IMAGINE", "status": "IN_PROGRESS", "progress": "58%",
        "prompt": "a lighthouse", "promptEn": "a lighthouse", "state": "", "failReason": "",
        "submitTime": 1773314942177, "startTime": 1773314945177, "finishTime": 0,
        "imageUrl": "", "videoUrl": "", "buttons": [], "properties": {}, **fields,
    }


GRID_BUTTONS = [
    {"customId": "MJ::JOB::upsample::1::8a1b", "label": "U1", "type": 2, "style": 2, "emoji": ""},
    {"customId": "MJ::JOB::upsample::2::8a1b", "label": "U2", "type": 2, "style": 2, "emoji": ""},
    {"customId": "MJ::JOB::reroll::0::8a1b::SOLO", "label": "", "type": 2, "style": 2, "emoji": "🔄"},
    {"customId": "MJ::JOB::variation::2::8a1b", "label": "V2", "type": 2, "style": 2, "emoji": ""},
]
DONE = task(status="SUCCESS", progress="100%", finishTime=1773314990177, buttons=GRID_BUTTONS,
            imageUrl="https://api.cometapi.com/mj/image/1773314942177684")


def parent(**fields: Any) -> SimpleNamespace:
    base = {"id": "job_parent", "model": "midjourney", "family": "midjourney", "status": "succeeded",
            "upstream_id": "1773314942177684", "upstream_payload": DONE}
    return SimpleNamespace(**(base | fields))


def with_parent(job: Any) -> ValidationContext:
    return ValidationContext(client_id="cli_test", get_job=lambda _id: job, get_upload=lambda _id: None)


class TestCreateContract:
    def test_imagine_needs_only_a_prompt(self):
        assert ADAPTER.validate(spec("midjourney"), {"prompt": "x"}, no_records()) == {"prompt": "x"}

    def test_imagine_sends_the_prompt_and_the_models_bot_type(self):
        request = ADAPTER.build_create(spec("niji-journey"), {"prompt": "a cat"}, [], None)
        assert (request.method, request.path) == ("POST", "/mj/submit/imagine")
        assert request.json == {"prompt": "a cat", "botType": "NIJI_JOURNEY"}

    def test_documented_submit_answer_gives_result_as_task_id(self):
        assert ADAPTER.parse_create(spec("midjourney"), SUBMITTED).upstream_id == "1773314942177684"

    def test_queued_answer_still_carries_the_task_id(self):
        answer = {"code": 22, "description": "In queue, there are 3 tasks ahead", "result": "1773314942177685"}
        assert ADAPTER.parse_create(spec("midjourney"), answer).upstream_id == "1773314942177685"

    def test_refusal_is_an_upstream_error_with_its_description(self):
        with pytest.raises(UpstreamError) as caught:
            ADAPTER.parse_create(spec("midjourney"), {"code": 24, "description": "Banned prompt: nsfw", "result": None})
        assert caught.value.code == "midjourney_banned_prompt"
        assert "Banned prompt" in caught.value.message
        assert not caught.value.retryable

    def test_full_queue_is_retried(self):
        with pytest.raises(UpstreamError) as caught:
            ADAPTER.parse_create(spec("midjourney"), {"code": 23, "description": "queue is full", "result": None})
        assert caught.value.retryable


class TestActionContract:
    @pytest.mark.parametrize(("button", "custom_id"), [
        ("U1", "MJ::JOB::upsample::1::8a1b"),
        ("v2", "MJ::JOB::variation::2::8a1b"),
        ("reroll", "MJ::JOB::reroll::0::8a1b::SOLO"),
        ("🔄", "MJ::JOB::reroll::0::8a1b::SOLO"),
    ])
    def test_button_is_picked_by_label_from_the_parents_latest_buttons(self, button, custom_id):
        request = ADAPTER.build_create(spec("midjourney"), {"parent_job_id": "job_parent", "button": button}, [],
                                       parent())
        assert (request.method, request.path) == ("POST", "/mj/submit/action")
        assert request.json == {"customId": custom_id, "taskId": "1773314942177684"}

    def test_custom_id_follows_the_parent_not_a_fixed_value(self):
        buttons = [dict(GRID_BUTTONS[0], customId="MJ::JOB::upsample::1::ffff")]
        job = parent(upstream_payload=dict(DONE, buttons=buttons))
        request = ADAPTER.build_create(spec("midjourney"), {"parent_job_id": "job_parent", "button": "U1"}, [], job)
        assert request.json["customId"] == "MJ::JOB::upsample::1::ffff"

    def test_valid_action_keeps_parent_and_button(self):
        raw = {"parent_job_id": "job_parent", "button": "U2"}
        out = ADAPTER.validate(spec("midjourney"), raw, with_parent(parent()))
        assert out == {"parent_job_id": "job_parent", "button": "U2"}

    @pytest.mark.parametrize(("job", "raw", "field", "words"), [
        (None, {"parent_job_id": "job_x", "button": "U1"}, "input.parent_job_id", "no job"),
        (parent(status="running"), {"parent_job_id": "job_parent", "button": "U1"}, "input.parent_job_id", "running"),
        (parent(family="suno", model="suno-v4"), {"parent_job_id": "job_parent", "button": "U1"},
         "input.parent_job_id", "not midjourney"),
        (parent(), {"parent_job_id": "job_parent", "button": "U9"}, "input.button", "U1, U2, 🔄, V2"),
        (parent(), {"parent_job_id": "job_parent"}, "input.button", "together"),
        (parent(upstream_payload=dict(DONE, buttons=[{"customId": "MJ::CustomZoom::8a1b", "label": "Custom Zoom"}])),
         {"parent_job_id": "job_parent", "button": "custom zoom"}, "input.button", "opens a form"),
        (parent(), {"parent_job_id": "job_parent", "button": "U1", "prompt": "x"}, "input.prompt", "no prompt"),
        (None, {}, "input.prompt", "required"),
    ])
    def test_invalid_action_names_the_field(self, job, raw, field, words):
        with pytest.raises(ValidationFailed) as caught:
            ADAPTER.validate(spec("midjourney"), raw, with_parent(job))
        messages = {e.field: e.message for e in caught.value.errors}
        assert field in messages, messages
        assert words.lower() in messages[field].lower()


class TestPollContract:
    def test_in_progress_with_percent_progress_and_millisecond_times(self):
        result = ADAPTER.parse_poll(spec("midjourney"), "1773314942177684", task())
        assert (result.state, result.progress) == (UpstreamState.RUNNING, 58)
        assert result.started_at == datetime.fromtimestamp(1773314945.177, UTC)
        assert result.finished_at is None

    @pytest.mark.parametrize("word", ["NOT_START", "SUBMITTED"])
    def test_waiting_words_are_pending(self, word):
        assert ADAPTER.parse_poll(spec("midjourney"), "1", task(status=word)).state is UpstreamState.PENDING

    def test_success_collects_the_stable_proxy_image(self):
        result = ADAPTER.parse_poll(spec("midjourney"), "1773314942177684", DONE)
        assert result.state is UpstreamState.SUCCEEDED and result.progress == 100
        [image] = result.outputs
        assert (image.name, image.url) == ("image", "https://api.cometapi.com/mj/image/1773314942177684")
        assert result.payload["buttons"] == GRID_BUTTONS  # kept for follow-up actions

    def test_video_and_per_image_links_are_collected_too(self):
        body = dict(DONE, videoUrl="https://api.cometapi.com/mj/video/1.mp4",
                    image_urls=[{"url": "https://cdn.example/0_0.png"}, "https://cdn.example/0_1.png"])
        outputs = {o.name: o for o in ADAPTER.parse_poll(spec("midjourney"), "1", body).outputs}
        assert set(outputs) == {"image", "video", "image_1", "image_2"}
        assert outputs["image_2"].optional and not outputs["image"].optional

    def test_failure_keeps_fail_reason(self):
        result = ADAPTER.parse_poll(spec("midjourney"), "1", task(status="FAILURE", failReason="Banned prompt: x"))
        assert (result.state, result.error_message) == (UpstreamState.FAILED, "Banned prompt: x")

    def test_modal_is_a_stop_state_we_cannot_continue(self):
        result = ADAPTER.parse_poll(spec("midjourney"), "1", task(status="MODAL"))
        assert (result.state, result.error_code) == (UpstreamState.FAILED, "modal_required")

    def test_unknown_status_word_means_keep_polling(self):
        assert ADAPTER.parse_poll(spec("midjourney"), "1", task(status="WARMING_UP")).state is UpstreamState.UNKNOWN

    def test_batch_request_lists_the_ids(self):
        request = ADAPTER.build_batch_poll(spec("midjourney"), ["1", "2"])
        assert (request.method, request.path, request.json) == ("POST", "/mj/task/list-by-condition",
                                                                 {"ids": ["1", "2"]})

    def test_batch_answer_is_an_array_of_tasks(self):
        answer = [task(id="1"), dict(DONE, id="2"), task(id="someone-elses")]
        results = ADAPTER.parse_batch_poll(spec("midjourney"), ["1", "2", "3"], answer)
        assert set(results) == {"1", "2"}
        assert results["1"].state is UpstreamState.RUNNING and results["2"].state is UpstreamState.SUCCEEDED


class TestImagineEndToEnd:
    def test_imagine_succeeds_with_the_image_stored(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "midjourney", {"prompt": "a lighthouse at dawn --ar 3:2"})
        assert job["status"] == "succeeded", job
        assert job["upstream"]["status"] == "SUCCESS"
        [image] = job["artifacts"]
        original = emulator.download(f"/mj/image/{job['upstream']['id']}")
        assert image["name"] == "image" and image["content_type"] == "image/png"
        assert image["sha256"] == hashlib.sha256(original).hexdigest()
        assert http.get(image["url"], headers=client.headers).content == original

    def test_upstream_failure_is_failed_with_the_fail_reason(self, http, make_client, emulator):
        job = run_job(http, make_client(), "midjourney", {"prompt": "something banned [fail]"})
        assert job["status"] == "failed"
        assert job["error"]["code"] == "generation_failed"
        assert job["error"]["source"] == "upstream"
        assert "Banned prompt" in job["error"]["message"]


class TestActionEndToEnd:
    def test_u1_and_reroll_on_a_finished_imagine_succeed_as_child_jobs(self, http, make_client, emulator):
        client = make_client()
        imagine = run_job(http, client, "midjourney", {"prompt": "a red kite over dunes"})
        assert imagine["status"] == "succeeded", imagine
        upscale = submit(http, client, model="midjourney", input={"parent_job_id": imagine["id"], "button": "U1"})
        reroll = submit(http, client, model="midjourney", input={"parent_job_id": imagine["id"], "button": "reroll"})
        assert upscale["parent_job_id"] == imagine["id"]
        for child in (upscale, reroll):
            done = wait_terminal(http, client, child["id"], timeout=90)
            assert done["status"] == "succeeded", done
            assert [a["name"] for a in done["artifacts"]] == ["image"]
        tasks = {t["id"]: t for t in emulator.tasks()}
        parent_task = tasks[imagine["upstream"]["id"]]
        up_task = tasks[get_job(http, client, upscale["id"])["upstream"]["id"]]
        assert up_task["params"]["action"] == "UPSCALE"
        assert up_task["params"]["parent"] == parent_task["id"]
        assert up_task["params"]["custom_id"].startswith("MJ::JOB::upsample::1::")
        assert tasks[get_job(http, client, reroll["id"])["upstream"]["id"]]["params"]["action"] == "REROLL"

    def test_action_on_an_unfinished_or_foreign_parent_is_422(self, http, make_client, emulator):
        client = make_client()
        emulator.configure(job_seconds=30)
        pending = submit(http, client, model="midjourney", input={"prompt": "slow one"})
        response = http.post("/v1/jobs", headers=client.headers, json={
            "model": "midjourney", "input": {"parent_job_id": pending["id"], "button": "U1"}})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "input.parent_job_id"
        other = make_client("other")
        response = http.post("/v1/jobs", headers=other.headers, json={
            "model": "midjourney", "input": {"parent_job_id": pending["id"], "button": "U1"}})
        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "not_found"


class TestBatchPolling:
    def test_jobs_in_flight_are_polled_through_list_by_condition(self, http, make_client, emulator):
        emulator.configure(job_seconds=3)
        client = make_client()
        jobs = [submit(http, client, model="midjourney", input={"prompt": f"batch {i}"}) for i in range(4)]
        for job in jobs:
            assert wait_terminal(http, client, job["id"], timeout=90)["status"] == "succeeded"
        stats = emulator.stats()
        per_model = stats["per_model"]["midjourney"]
        assert per_model["polls"] > 0
        assert per_model.get("batch_polls", 0) == per_model["polls"]  # never one fetch per task
        assert stats["totals"]["batch_max_ids"] >= 2  # several ids per call

    def test_undocumented_status_word_keeps_polling_until_success(self, http, make_client, emulator):
        emulator.configure(job_seconds=3)
        client = make_client()
        job = submit(http, client, model="midjourney", input={"prompt": "a comet [odd-status]"})
        wait_for(lambda: get_job(http, client, job["id"])["upstream"]["status"] == "rendering_on_mars",
                 timeout=60, interval=0.1, message="the undocumented status word to be seen")
        assert wait_terminal(http, client, job["id"], timeout=90)["status"] == "succeeded"
