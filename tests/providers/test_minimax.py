"""MiniMax (Hailuo): the adapter against MiniMax's payloads (unverified on
CometAPI), input rules, and jobs through the real pipeline: create, query, then
download by file id."""

from __future__ import annotations

from app.providers.base import UpstreamState
from app.providers.minimax import ADAPTER
from tests.providers.video_support import input_file, no_records, png, run_job, spec, task_with

OK = {"status_code": 0, "status_msg": "success"}
CREATE_ANSWER = {"task_id": "106916112212032", "base_resp": OK}


def query(status: str, **fields):
    return {"task_id": "106916112212032", "status": status, "file_id": "", "base_resp": OK, **fields}


class TestCreateContract:
    def test_body_names_the_upstream_model(self):
        job_input = {"prompt": "p", "duration": 10, "resolution": "768P", "prompt_optimizer": False}
        request = ADAPTER.build_create(spec("minimax-hailuo-02"), job_input, [], None)
        assert (request.method, request.path) == ("POST", "/minimax/v1/video_generation")
        assert request.json == {"model": "MiniMax-Hailuo-02", **job_input}

    def test_uploaded_first_frame_goes_as_a_data_uri(self):
        request = ADAPTER.build_create(spec("minimax-hailuo-02"), {"prompt": "p", "first_frame_image": "upl_1"},
                                       [input_file("first_frame_image", png())], None)
        assert request.json["first_frame_image"].startswith("data:image/png;base64,")

    def test_create_answer_gives_the_task_id(self):
        assert ADAPTER.parse_create(spec("minimax-hailuo-02"), CREATE_ANSWER).upstream_id == "106916112212032"

    def test_refusal_in_base_resp_fails_at_once_with_the_reason(self):
        created = ADAPTER.parse_create(spec("minimax-hailuo-02"), {"task_id": "", "base_resp": {
            "status_code": 1026, "status_msg": "input new_sensitive"}})
        assert created.immediate is not None
        assert (created.immediate.state, created.immediate.error_code, created.immediate.error_message) == (
            UpstreamState.FAILED, "minimax_1026", "input new_sensitive")


class TestPollContract:
    def test_query_is_by_task_id_parameter(self):
        request = ADAPTER.build_poll(spec("minimax-hailuo-02"), "106916112212032")
        assert (request.path, request.params) == ("/minimax/v1/query/video_generation", {"task_id": "106916112212032"})

    def test_status_words(self):
        states = {word: ADAPTER.parse_poll(spec("minimax-hailuo-02"), "t", query(word)).state
                  for word in ("Preparing", "Queueing", "Processing")}
        assert states == {"Preparing": UpstreamState.PENDING, "Queueing": UpstreamState.PENDING,
                          "Processing": UpstreamState.RUNNING}

    def test_success_downloads_by_file_id(self):
        result = ADAPTER.parse_poll(spec("minimax-hailuo-02"), "t", query("Success", file_id="205258526306433"))
        assert result.state is UpstreamState.SUCCEEDED
        [video] = result.outputs
        assert (video.request.path, video.request.params) == ("/minimax/v1/files/retrieve_content",
                                                             {"file_id": "205258526306433"})

    def test_success_with_a_download_url_uses_it(self):
        body = query("Success", file_id="2", download_url="https://cdn.hailuo.example/v.mp4")
        [video] = ADAPTER.parse_poll(spec("minimax-hailuo-02"), "t", body).outputs
        assert (video.url, video.request) == ("https://cdn.hailuo.example/v.mp4", None)

    def test_fail_keeps_the_status_code_and_message(self):
        body = query("Fail", base_resp={"status_code": 1027, "status_msg": "output video new_sensitive"})
        result = ADAPTER.parse_poll(spec("minimax-hailuo-02"), "t", body)
        assert (result.state, result.error_code, result.error_message) == (
            UpstreamState.FAILED, "minimax_1027", "output video new_sensitive")

    def test_unknown_word_means_keep_polling(self):
        assert ADAPTER.parse_poll(spec("minimax-hailuo-02"), "t", query("Rendering")).state is UpstreamState.UNKNOWN


def fields_in(api, client, model, **fields):
    response = api.post("/v1/jobs", json={"model": model, "input": fields}, headers=client.headers)
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


class TestValidation:
    def test_defaults(self):
        assert ADAPTER.validate(spec("minimax-hailuo-02"), {"prompt": "p"}, no_records()) == {
            "prompt": "p", "duration": 6, "resolution": "768P"}

    def test_duration_must_be_6_or_10(self, api, make_client):
        assert "6, 10" in fields_in(api, make_client(), "minimax-hailuo-02", prompt="p", duration=8)["input.duration"]

    def test_1080p_allows_only_6_seconds(self, api, make_client):
        errors = fields_in(api, make_client(), "minimax-hailuo-02", prompt="p", duration=10, resolution="1080P")
        assert "1080P allows at most 6 seconds" in errors["input.duration"]

    def test_first_frame_refused_where_the_model_takes_none(self, api, make_client):
        errors = fields_in(api, make_client(), "minimax-t2v-01-director", prompt="p",
                           first_frame_image="https://a.example/f.png")
        assert "input.first_frame_image" in errors


class TestEndToEnd:
    def test_video_is_downloaded_by_file_id(self, http, make_client, emulator):
        client = make_client()
        job = run_job(http, client, "minimax-hailuo-02", {"prompt": "a paper crane unfolds", "duration": 10})
        assert job["status"] == "succeeded", job
        [artifact] = job["artifacts"]
        assert (artifact["name"], artifact["content_type"]) == ("video", "video/mp4")
        task = task_with(emulator, "minimax", "a paper crane unfolds")
        assert task["params"]["duration"] == 10
        assert emulator.stats()["per_model"]["MiniMax-Hailuo-02"]["downloads"] == 1

    def test_upstream_failure_is_failed_with_the_upstream_reason(self, http, make_client, emulator):
        job = run_job(http, make_client(), "minimax-hailuo-02", {"prompt": "something forbidden [fail]"})
        assert job["status"] == "failed"
        assert (job["error"]["source"], job["error"]["code"]) == ("upstream", "minimax_1027")
        assert "sensitive" in job["error"]["message"]

    def test_refusal_at_create_is_failed_with_the_upstream_reason(self, http, make_client, emulator):
        job = run_job(http, make_client(), "minimax-hailuo-02", {"prompt": "refused outright [refuse]"})
        assert job["status"] == "failed"
        assert (job["error"]["source"], job["error"]["code"]) == ("upstream", "minimax_1026")
        assert emulator.stats()["creates"] == 0
