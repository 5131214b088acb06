"""Runway on CometAPI (`/runwayml/v1/...`): image to video, video to video, upscale.

Create (https://apidoc.cometapi.com/api/video/runway/official-format/runway-images-raw-video,
.../generate-a-video-from-a-video, .../upscale-a-video) needs the `X-Runway-Version`
header and answers `{id}`. Image to video: `promptImage` a stable **https** URL,
`promptText` at most 512 characters, `seed` 0-999,999,999, `duration` 5 or 10, one of
eight `ratio`s. Video to video: `videoUri`, `promptText` at most 1,000, `seed` up to
4,294,967,295, `references` as `{type, uri}` with https URIs. Upscale: `upscale_v1` and
an https `videoUri`. An upload therefore reaches Runway as a signed https link to our
own API (`input_links`), never inline.

The query `GET /runwayml/v1/tasks/{id}` is documented with two answers
(https://apidoc.cometapi.com/api/video/runway/official-format/runway-to-get-task-details):
Runway's own task (`status` PENDING / RUNNING / SUCCEEDED / FAILED, `progress`
0-1, `failure` / `failureCode`, `output[]`, ISO times) and CometAPI's wrapper
(`code`, `data.status` QUEUED ..., `data.progress` "0%", `data.fail_reason`, the
Runway task under `data.data`). Both are read. A task just created may answer
`task_not_exist` for a few seconds: that means keep polling.
The catalogue maps our fields to the upstream's keys (`body`) and holds the limits.
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
    parse_timestamp,
    upstream_state,
)
from app.providers.shared import (
    linked,
    numbered,
    require_public_links,
    result_url,
    uploads_among,
)

NOT_YET = "task_not_exist"


def _fraction(value: Any) -> Any:
    """Runway's own `progress` is 0-1 (1.0 is done, not 1%)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return round(value * 100)
    return value


class RunwayInput(BaseModel):
    """Input for the Runway models. Which fields a model takes and requires, and its
    ratios and durations, are listed by `GET /v1/models`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(
        None, min_length=1, description="What the video should show (image to video: at most 512 characters; "
        "video to video: 1,000)."
    )
    image: str | None = Field(
        None, description="First frame (image to video): an upload id (`upl_...`, sent to Runway as a signed "
        "https link to this API) or an https URL."
    )
    video: str | None = Field(None, description="Source video (video to video, upscale): an https URL.")
    ratio: str | None = Field(None, description="Output resolution as `W:H` pixels, e.g. `1280:720`.")
    duration: StrictInt | None = Field(None, description="Seconds, e.g. 5 or 10.")
    seed: StrictInt | None = Field(None, ge=0, description="Image to video: at most 999,999,999; video to video: "
                                   "4,294,967,295.")
    references: list[str] | None = Field(
        None, max_length=3, description="Style reference images (video to video): upload ids or https URLs."
    )


class RunwayAdapter(Adapter):
    family = "runway"
    input_model = RunwayInput

    def check(
        self, spec: ModelSpec, data: RunwayInput, job_input: dict[str, Any], ctx: ValidationContext, problems: Problems
    ) -> None:
        fields = spec.option("fields", [])
        problems.unsupported(data, fields, RunwayInput.model_fields)
        for name in spec.option("required", []):
            if getattr(data, name) is None:
                problems.add(name, f"{spec.id} needs {name}", "missing")
        for name, allowed in (("ratio", "ratios"), ("duration", "durations")):
            if name in fields:
                value = job_input.get(name, spec.option(f"default_{name}"))
                problems.choice(name, value, spec.option(allowed, []))
                job_input[name] = value
        problems.max_length("prompt", data.prompt, spec.option("prompt_max"))
        if data.seed is not None and data.seed > spec.option("seed_max", data.seed):
            problems.add("seed", f"at most {spec.option('seed_max'):,} for {spec.id}", "out_of_range")
        images = [("image", data.image)] + [(f"references.{i}", ref) for i, ref in enumerate(data.references or [])]
        for field, ref in images:
            if ref is not None:
                problems.image(field, ref, ctx, https_only=True)
                require_public_links(problems, field, ref)
        if data.video is not None:
            problems.url("video", data.video, https_only=True)

    def input_links(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        refs = [("image", job_input.get("image"))]
        refs += [(f"references.{i}", ref) for i, ref in enumerate(job_input.get("references", []))]
        return uploads_among(refs)

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        keys: dict[str, str] = spec.option("body", {})
        body: dict[str, Any] = {"model": spec.upstream_model}
        for name, value in job_input.items():
            if name == "image":
                value = linked(value, name, files)
            elif name == "references":
                value = [{"type": "image", "uri": linked(ref, f"references.{i}", files)} for i, ref in enumerate(value)]
            body[keys.get(name, name)] = value
        return UpstreamRequest("POST", spec.option("create_path"), json=body,
                               headers={"X-Runway-Version": spec.option("api_version")})

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        task_id = first(body, "id", "task_id", "data.task_id", "data.id") if isinstance(body, dict) else None
        if task_id is None and isinstance(body, dict) and isinstance(body.get("data"), str):
            task_id = body["data"]
        if not isinstance(task_id, str):
            raise UnreadableAnswer(f"create answer has no task id: {str(body)[:200]}")
        return CreateResult(upstream_id=task_id)

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("query_path").format(id=upstream_id),
                               headers={"X-Runway-Version": spec.option("api_version")})

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the answer")
        if NOT_YET in (body.get("code"), body.get("message"), body.get("error")):
            return PollResult(UpstreamState.PENDING, raw_status=NOT_YET, payload=body)
        wrapper = body["data"] if isinstance(body.get("data"), dict) else None
        if wrapper is not None:
            task = wrapper["data"] if isinstance(wrapper.get("data"), dict) else {}
            raw = wrapper.get("status") or task.get("status")
            progress = wrapper.get("progress")
            if progress is None:
                progress = _fraction(task.get("progress"))
            reason = wrapper.get("fail_reason") or task.get("failure")
            started = [wrapper.get("start_time"), wrapper.get("submit_time"), task.get("createdAt")]
            times = (next(filter(None, map(parse_timestamp, started)), None),
                     parse_timestamp(wrapper.get("finish_time")))
        else:
            task = body
            raw, progress, reason = body.get("status"), _fraction(body.get("progress")), body.get("failure")
            times = (parse_timestamp(body.get("createdAt")), None)
        state = upstream_state(spec, raw)
        result = PollResult(state=state, raw_status=raw, progress=parse_progress(progress), payload=body,
                            started_at=times[0], finished_at=times[1])
        if state is UpstreamState.FAILED:
            result.error_code = str(task.get("failureCode") or "generation_failed")
            result.error_message = str(reason or f"upstream reported {raw}")
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            output = task.get("output") or []
            if not isinstance(output, list):
                raise UnreadableAnswer(f"output is not a list: {str(output)[:200]}")
            urls = [u for u in output if isinstance(u, str)]
            if not urls and wrapper:
                single = result_url(wrapper, ["result_url", "video_url"])
                urls = [single] if single else []
            result.outputs = [
                ArtifactSource(numbered("video", len(urls), i), url=url, content_type="video/mp4")
                for i, url in enumerate(urls)
            ]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        example: dict[str, Any] = {}
        fields = spec.option("fields", [])
        if "prompt" in fields:
            example["prompt"] = "The camera slowly pushes in as leaves drift across the frame"
        if "image" in fields:
            example["image"] = "https://images.example.com/runway/first-frame.jpg"
        if "video" in fields:
            example["video"] = "https://videos.example.com/runway/source.mp4"
        for name in ("ratio", "duration"):
            if name in fields:
                example[name] = spec.option(f"default_{name}")
        return example

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        keys = ("task", "fields", "required", "ratios", "durations", "prompt_max", "seed_max")
        return {key: spec.option(key) for key in keys if spec.option(key) is not None}


ADAPTER = RunwayAdapter()
