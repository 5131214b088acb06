"""MiniMax (Hailuo) video: create, query, then download the file.

UNVERIFIED as a whole: CometAPI's MiniMax pages were NOT FOUND (COMETAPI.md §2).
This follows MiniMax's own API as other relays expose it: `POST
/minimax/v1/video_generation` `{model, prompt, duration 6|10, resolution,
first_frame_image?}` answers `{task_id, base_resp}`; `GET
/minimax/v1/query/video_generation?task_id=` answers `status` (Preparing /
Queueing / Processing / Success / Fail) and `file_id`; the bytes come from
`GET /minimax/v1/files/retrieve_content?file_id=` unless the answer carries a
download URL. `base_resp.status_code` other than 0 is a refusal with the reason
in `status_msg`. Paths, status words, body keys and URL fields are all in
`catalog/minimax.toml`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.numbers import StrictInt
from app.providers.base import (
    Adapter,
    ArtifactSource,
    CreateResult,
    InputFile,
    ModelSpec,
    PollResult,
    Problems,
    UnreadableAnswer,
    UpstreamRequest,
    UpstreamState,
    ValidationContext,
    as_object,
    first,
    parse_progress,
    upstream_state,
)
from app.providers.shared import inline_image, result_url, uploads_among


class MiniMaxInput(BaseModel):
    """Input for the MiniMax (Hailuo) video models. Durations and resolutions per
    model are listed by `GET /v1/models` (e.g. 1080P only for 6-second clips)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000, description="What the video should show.")
    duration: StrictInt | None = Field(None, description="Seconds: 6 or 10.")
    resolution: str | None = Field(None, description="e.g. `768P` or `1080P`.")
    prompt_optimizer: bool | None = Field(None, description="Let MiniMax rewrite the prompt.")
    first_frame_image: str | None = Field(None, description="First frame: an upload id (`upl_...`) or an https URL.")


def _refusal(body: Any) -> tuple[int, str] | None:
    status = first(body, "base_resp.status_code")
    if status in (None, 0, "0"):
        return None
    try:
        code = int(status)
    except (OverflowError, TypeError, ValueError):
        raise UnreadableAnswer(f"base_resp.status_code is not a number: {str(status)[:200]}") from None
    return code, str(first(body, "base_resp.status_msg") or f"MiniMax status code {status}")


class MiniMaxAdapter(Adapter):
    family = "minimax"
    input_model = MiniMaxInput

    def check(
        self, spec: ModelSpec, data: MiniMaxInput, job_input: dict[str, Any], ctx: ValidationContext,
        problems: Problems,
    ) -> None:
        for field, allowed in (("duration", "durations"), ("resolution", "resolutions")):
            job_input.setdefault(field, spec.option(f"default_{field}"))
            problems.choice(field, job_input[field], spec.option(allowed, []))
        longest = (spec.option("max_duration_by_resolution") or {}).get(job_input["resolution"])
        if longest is not None and int(job_input["duration"]) > int(longest):
            problems.add("duration", f"{job_input['resolution']} allows at most {longest} seconds on {spec.id}",
                         "not_allowed")
        if data.first_frame_image is not None:
            if not spec.option("first_frame", True):
                problems.add("first_frame_image", f"not supported by {spec.id}", "unsupported_field")
            problems.image("first_frame_image", data.first_frame_image, ctx)

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        return uploads_among([("first_frame_image", job_input.get("first_frame_image"))])

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        keys: dict[str, str] = spec.option("body", {})
        body: dict[str, Any] = {"model": spec.upstream_model}
        for name, value in job_input.items():
            if name == "first_frame_image":
                value = inline_image(value, name, files)
            body[keys.get(name, name)] = value
        return UpstreamRequest("POST", spec.option("create_path"), json=body)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        body = as_object(body, "the create answer")
        refused = _refusal(body)
        if refused is not None and not body.get("task_id"):
            code, message = refused
            failed = PollResult(UpstreamState.FAILED, raw_status=str(code), error_code=f"minimax_{code}",
                                error_message=message, payload=body)
            return CreateResult(upstream_id="", immediate=failed)
        task_id = body.get("task_id")
        if not task_id:
            raise UnreadableAnswer(f"create answer has no task_id: {str(body)[:200]}")
        return CreateResult(upstream_id=str(task_id))

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("query_path"), params={"task_id": upstream_id})

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the answer")
        raw = body.get("status")
        refused = _refusal(body)
        if raw is None and refused is not None:
            raise UnreadableAnswer(f"MiniMax answered status code {refused[0]}: {refused[1]}")
        state = upstream_state(spec, raw)
        result = PollResult(state=state, raw_status=raw, progress=parse_progress(body.get("progress")), payload=body)
        if state is UpstreamState.FAILED:
            result.error_code = f"minimax_{refused[0]}" if refused else "generation_failed"
            result.error_message = (refused[1] if refused else None) or str(
                first(body, "error_message", "fail_reason") or f"upstream reported {raw}")
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            url = result_url(body, spec.option("result_url_fields", []))
            file_id = body.get("file_id")
            if url:
                result.outputs = [ArtifactSource("video", url=url, content_type="video/mp4")]
            elif file_id:
                download = UpstreamRequest("GET", spec.option("file_path"), params={"file_id": str(file_id)})
                result.outputs = [ArtifactSource("video", download, content_type="video/mp4")]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        return {
            "prompt": "A street food vendor flips noodles in a wok, steam rising under neon signs",
            "duration": spec.option("default_duration"),
            "resolution": spec.option("default_resolution"),
        }

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        keys = ("durations", "resolutions", "max_duration_by_resolution", "first_frame")
        return {key: spec.option(key) for key in keys if spec.option(key) is not None}


ADAPTER = MiniMaxAdapter()
