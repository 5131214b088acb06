"""Kling on CometAPI (`/kling/v1/...`): text to video, image to video, image
generation and Omni video.

Text to video and the query are documented (https://apidoc.cometapi.com/api/video/kling/text-to-video,
.../kling/individual-queries): the create answers `data.task_id`; the query's
`data.task_status` is submitted / processing / succeed / failed, the result is at
`data.task_result.videos[i].url` (or `.images[i].url`), the reason for a failure in
`data.task_status_msg`, times in milliseconds. The Omni query is documented in two
shapes (COMETAPI.md §2): Kling's own, and CometAPI's task wrapper with
`data.status` (SUCCESS / FAILURE ...), `data.progress` ("58%") and Kling's payload
under `data.data`; both are read. UNVERIFIED (marked in `catalog/kling.toml`): the
image-to-video create path (inferred from the query's sub-actions), the image
generation body, and the Omni `image_list` entry shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.core.numbers import StrictFloat, StrictInt
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
from app.providers.shared import inline_image, numbered, uploads_among

IMAGE_FIELDS = ("image", "image_tail")
IMAGE_TYPES = {"image/jpeg": "JPG/JPEG", "image/png": "PNG"}
_OTHER_IMAGE_SUFFIXES = (".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif", ".svg")


def _to_str(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class KlingCameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizontal: StrictFloat | None = Field(None, ge=-10, le=10)
    vertical: StrictFloat | None = Field(None, ge=-10, le=10)
    pan: StrictFloat | None = Field(None, ge=-10, le=10)
    tilt: StrictFloat | None = Field(None, ge=-10, le=10)
    roll: StrictFloat | None = Field(None, ge=-10, le=10)
    zoom: StrictFloat | None = Field(None, ge=-10, le=10)


class KlingCameraControl(BaseModel):
    """`simple` takes a `config` with exactly one non-zero movement; the preset types take none."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
    config: KlingCameraConfig | None = None

    @model_validator(mode="after")
    def _one_movement(self) -> KlingCameraControl:
        if self.type == "simple":
            moving = [k for k, v in (self.config.model_dump() if self.config else {}).items() if v]
            if len(moving) != 1:
                raise ValueError(f"a simple camera move needs exactly one non-zero config value; got {len(moving)}")
        elif self.config is not None:
            raise ValueError(f"camera_control type {self.type} takes no config")
        return self


class KlingInput(BaseModel):
    """Input for the Kling models. Which fields a model takes, and their allowed
    values (aspect ratios, modes, durations, prompt lengths), are listed by
    `GET /v1/models`; a field the model does not take is refused."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, min_length=1, description="What to generate (at most 500 characters; Omni 2500).")
    negative_prompt: str | None = Field(None, description="What to avoid (at most 200 characters).")
    aspect_ratio: str | None = Field(None, description="e.g. `16:9`, `9:16`, `1:1`.")
    cfg_scale: StrictFloat | None = Field(None, ge=0, le=1, description="Prompt adherence, 0-1.")
    mode: Literal["std", "pro"] | None = Field(None, description="`std` (faster) or `pro` (higher quality).")
    duration: Annotated[str, BeforeValidator(_to_str)] | None = Field(None, description="Seconds: `5` or `10`.")
    camera_control: KlingCameraControl | None = None
    image: str | None = Field(
        None, description="First frame / reference image: an upload id (`upl_...`) or an https URL."
    )
    image_tail: str | None = Field(None, description="Last frame (image to video): an upload id or an https URL.")
    n: StrictInt | None = Field(None, ge=1, le=9, description="Images to generate (image generation), 1-9.")
    image_fidelity: StrictFloat | None = Field(None, ge=0, le=1, description="How closely to follow `image`, 0-1.")


class KlingAdapter(Adapter):
    family = "kling"
    input_model = KlingInput

    def check(
        self, spec: ModelSpec, data: KlingInput, job_input: dict[str, Any], ctx: ValidationContext, problems: Problems
    ) -> None:
        fields = spec.option("fields", [])
        problems.unsupported(data, fields, KlingInput.model_fields)
        if data.prompt is None and spec.option("image") != "required":
            problems.add("prompt", "Field required", "missing")
        problems.max_length("prompt", data.prompt, spec.option("prompt_max"))
        problems.max_length("negative_prompt", data.negative_prompt, spec.option("negative_prompt_max"))
        for name, allowed in (("aspect_ratio", "aspect_ratios"), ("mode", "modes"), ("duration", "durations")):
            if name in fields:
                value = job_input.get(name) or spec.option(f"default_{name}")
                problems.choice(name, value, spec.option(allowed, []))
                job_input[name] = value
        if spec.option("image") == "required" and data.image is None:
            problems.add("image", f"{spec.id} needs a first-frame image", "missing")
        for name in IMAGE_FIELDS:
            ref = getattr(data, name)
            if name in fields and ref is not None:
                problems.image(name, ref, ctx, types=IMAGE_TYPES)
                if ref.split("?", 1)[0].lower().endswith(_OTHER_IMAGE_SUFFIXES):
                    problems.add(name, f"{spec.id} takes JPG/JPEG or PNG images only", "not_an_image")

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        return uploads_among((name, job_input.get(name)) for name in IMAGE_FIELDS)

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        body: dict[str, Any] = {"model_name": spec.upstream_model}
        for name, value in job_input.items():
            # Kling takes images as URLs or bare base64 (no data: prefix).
            body[name] = inline_image(value, name, files, data_uri=False) if name in IMAGE_FIELDS else value
        if spec.option("format") == "omni":
            frames = [("image", "first_frame"), ("image_tail", "end_frame")]
            images = [{"image_url": body.pop(name), "type": kind} for name, kind in frames if name in body]
            if images:
                body["image_list"] = images
        return UpstreamRequest("POST", spec.option("create_path"), json=body)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        body = as_object(body, "the create answer")
        code = body.get("code", 0)
        task_id = first(body, "data.task_id")
        if code not in (0, "0", "success") and not task_id:
            failed = PollResult(
                UpstreamState.FAILED, raw_status=str(code), error_code=f"kling_{code}",
                error_message=str(body.get("message") or f"Kling refused the task (code {code})"), payload=body,
            )
            return CreateResult(upstream_id=str(body.get("request_id") or ""), immediate=failed)
        if not task_id:
            raise UnreadableAnswer(f"create answer has no data.task_id: {str(body)[:200]}")
        return CreateResult(upstream_id=str(task_id))

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("query_path").format(id=upstream_id))

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        data = as_object(body, "the answer").get("data")
        if not isinstance(data, dict):
            raise UnreadableAnswer(f"Kling answered code {body.get('code')}: {body.get('message')}")
        raw = first(data, "task_status", "status", "data.task_status")
        state = upstream_state(spec, raw)
        result = PollResult(
            state=state, raw_status=raw, progress=parse_progress(data.get("progress")), payload=body,
            started_at=parse_timestamp(first(data, "start_time", "created_at", "data.created_at")),
        )
        if state in (UpstreamState.SUCCEEDED, UpstreamState.FAILED):
            result.finished_at = parse_timestamp(first(data, "finish_time", "updated_at", "data.updated_at"))
        if state is UpstreamState.FAILED:
            result.error_code = "generation_failed"
            result.error_message = str(
                first(data, "task_status_msg", "fail_reason", "data.task_status_msg") or f"upstream reported {raw}"
            )
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            kind = spec.option("result", "videos")
            items = first(data, f"task_result.{kind}", f"data.task_result.{kind}") or []
            if not isinstance(items, list):
                raise UnreadableAnswer(f"task_result.{kind} is not a list: {str(items)[:200]}")
            name, content_type = ("video", "video/mp4") if kind == "videos" else ("image", "image/png")
            urls = [item["url"] for item in items if isinstance(item, dict) and item.get("url")]
            result.outputs = [
                ArtifactSource(numbered(name, len(urls), i), url=url, content_type=content_type)
                for i, url in enumerate(urls)
            ]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        fields = spec.option("fields", [])
        example: dict[str, Any] = {"prompt": "A red fox trotting through fresh snow at sunrise, cinematic"}
        for name in ("aspect_ratio", "mode", "duration"):
            if name in fields and spec.option(f"default_{name}") is not None:
                example[name] = spec.option(f"default_{name}")
        if spec.option("image") == "required":
            example["image"] = "https://images.example.com/kling/first-frame.png"
        if "n" in fields:
            example["n"] = 1
        return example

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        keys = ("fields", "aspect_ratios", "modes", "durations", "prompt_max", "negative_prompt_max", "image")
        out = {key: spec.option(key) for key in keys if spec.option(key) is not None}
        out["cfg_scale"] = "0-1" if "cfg_scale" in spec.option("fields", []) else None
        return {k: v for k, v in out.items() if v is not None}


ADAPTER = KlingAdapter()
