"""Seedance (ByteDance video, `doubao-seedance-*`) on CometAPI's Volcengine route.

Create `POST /volc/v3/contents/generations/tasks` with `{model, content: [text,
image_url...]}`, where the text carries the settings as flags (`... --duration 5
--ratio 16:9`), answers `{"id"}`; `GET .../tasks/{id}` answers `status` and, when
done, `content.video_url` (https://cometapi.mintlify.app/api/video/bytedance/bytedance-video,
.../bytedance-video-get). Callers may give the settings as fields or as flags in
the prompt; both are checked against the model's constraints and sent as flags.
UNVERIFIED: only `succeeded` is documented; the other status words (Volcengine's
queued / running / failed / cancelled) live in the catalogue's `statuses` table,
as do the error shape's paths.
"""

from __future__ import annotations

import re
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
from app.providers.shared import inline_image, result_url, uploads_among

# Volcengine's text commands and their short forms, by our field names.
FLAGS = {
    "resolution": "resolution", "rs": "resolution",
    "ratio": "ratio", "rt": "ratio",
    "duration": "duration", "dur": "duration",
    "seed": "seed",
    "camerafixed": "camera_fixed", "cf": "camera_fixed",
    "watermark": "watermark", "wm": "watermark",
}
UPSTREAM_FLAG = {"resolution": "resolution", "ratio": "ratio", "duration": "duration", "seed": "seed",
                 "camera_fixed": "camerafixed", "watermark": "watermark"}
_FLAG = re.compile(r"(?<!\S)--(" + "|".join(sorted(FLAGS, key=len, reverse=True)) + r")(?:\s+|=)(\S+)", re.IGNORECASE)
_BOOLS = {"true": True, "false": False}


class SeedanceInput(BaseModel):
    """Input for the Seedance models. Settings may be fields or flags in the prompt
    (`--duration 5 --ratio 16:9 --resolution 720p --seed 7 --camerafixed true
    --watermark false`, short forms `--dur --rt --rs --cf --wm` too); a flag and a
    field that disagree are refused. Allowed values per model: `GET /v1/models`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, min_length=1, max_length=4000, description="What the video should show.")
    duration: StrictInt | None = Field(None, description="Seconds, e.g. 5 or 10.")
    ratio: str | None = Field(None, description="e.g. `16:9`, `9:16`, `1:1`; `adaptive` follows the image.")
    resolution: str | None = Field(None, description="`480p`, `720p` or `1080p`, as the model allows.")
    seed: StrictInt | None = Field(None, ge=-1, le=4294967295)
    camera_fixed: bool | None = Field(None, description="Keep the camera still.")
    watermark: bool | None = None
    image: str | None = Field(None, description="First frame: an upload id (`upl_...`) or an https URL.")
    last_frame: str | None = Field(None, description="Last frame (models that take one): upload id or https URL.")


def split_flags(prompt: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The prompt without its flags, and each flag as (field, value, as written)."""
    found = [(FLAGS[m.group(1).lower()], m.group(2), m.group(0)) for m in _FLAG.finditer(prompt)]
    text = re.sub(r"\s{2,}", " ", _FLAG.sub("", prompt)).strip()
    return text, found


def _flag_value(field: str, text: str) -> Any:
    if field in ("duration", "seed"):
        return int(text)
    if field in ("camera_fixed", "watermark"):
        return _BOOLS[text.lower()]
    return text


class SeedanceAdapter(Adapter):
    family = "seedance"
    input_model = SeedanceInput

    def check(
        self, spec: ModelSpec, data: SeedanceInput, job_input: dict[str, Any], ctx: ValidationContext,
        problems: Problems,
    ) -> None:
        if data.prompt is not None:
            text, flags = split_flags(data.prompt)
            job_input["prompt"] = text
            for field, written, whole in flags:
                try:
                    value = _flag_value(field, written)
                except (ValueError, KeyError):
                    problems.add("prompt", f"{whole!r}: {written!r} is not a valid {field}", "invalid_flag")
                    continue
                if field in job_input and job_input[field] != value:
                    problems.add("prompt", f"{whole!r} disagrees with {field} = {job_input[field]!r} given before",
                                 "conflict")
                job_input[field] = value
            if not text:
                job_input.pop("prompt")
        if "prompt" not in job_input and data.image is None:
            problems.add("prompt", "Field required (text to video needs a prompt)", "missing")
        for field, allowed in (("duration", "durations"), ("ratio", "ratios"), ("resolution", "resolutions")):
            job_input.setdefault(field, spec.option(f"default_{field}"))
            problems.choice(field, job_input[field], spec.option(allowed, []))
        image_rule = spec.option("image", "optional")
        if image_rule == "none" and data.image is not None:
            problems.add("image", f"{spec.id} is text to video only", "unsupported_field")
        if image_rule == "required" and data.image is None:
            problems.add("image", f"{spec.id} needs a first-frame image", "missing")
        if data.last_frame is not None and not spec.option("last_frame", False):
            problems.add("last_frame", f"not supported by {spec.id}", "unsupported_field")
        if data.last_frame is not None and data.image is None:
            problems.add("last_frame", "a last frame needs a first frame (image)", "missing")
        for name in ("image", "last_frame"):
            if getattr(data, name) is not None:
                problems.image(name, getattr(data, name), ctx)

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        return uploads_among((name, job_input.get(name)) for name in ("image", "last_frame"))

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        flags = []
        for field, flag in UPSTREAM_FLAG.items():
            if field in job_input:
                value = job_input[field]
                flags.append(f"--{flag} {str(value).lower() if isinstance(value, bool) else value}")
        text = " ".join(part for part in (job_input.get("prompt", ""), *flags) if part)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        two_frames = "last_frame" in job_input
        for name, role in (("image", "first_frame"), ("last_frame", "last_frame")):
            if name in job_input:
                url = inline_image(job_input[name], name, files)
                item: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
                if two_frames:
                    item["role"] = role
                content.append(item)
        body = {"model": spec.upstream_model, "content": content}
        return UpstreamRequest("POST", spec.option("create_path"), json=body)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        task_id = first(body, "id", "task_id", "data.id") if isinstance(body, dict) else None
        if not isinstance(task_id, str):
            raise UnreadableAnswer(f"create answer has no id: {str(body)[:200]}")
        return CreateResult(upstream_id=task_id)

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("query_path").format(id=upstream_id))

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the answer")
        raw = body.get("status")
        state = upstream_state(spec, raw)
        result = PollResult(state=state, raw_status=raw, progress=parse_progress(body.get("progress")), payload=body,
                            started_at=parse_timestamp(body.get("created_at")))
        if state in (UpstreamState.SUCCEEDED, UpstreamState.FAILED):
            result.finished_at = parse_timestamp(body.get("updated_at"))
        if state is UpstreamState.FAILED:
            result.error_code = str(first(body, *spec.option("error_code_fields", [])) or "generation_failed")
            result.error_message = str(
                first(body, *spec.option("error_message_fields", [])) or f"upstream reported {raw}"
            )
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            url = result_url(body, spec.option("result_url_fields", ["content.video_url"]))
            result.outputs = [ArtifactSource("video", url=url, content_type="video/mp4")] if url else []
            last = result_url(body, ["content.last_frame_url"])
            if last:
                result.outputs.append(ArtifactSource("last_frame", url=last, optional=True, content_type="image/png"))
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        example: dict[str, Any] = {
            "prompt": f"A lighthouse on a cliff as waves crash below --duration {spec.option('default_duration')} "
            f"--ratio {spec.option('default_ratio')}",
        }
        if spec.option("image") == "required":
            example["image"] = "https://images.example.com/seedance/first-frame.png"
        return example

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        keys = ("durations", "ratios", "resolutions", "image", "last_frame")
        out = {key: spec.option(key) for key in keys if spec.option(key) is not None}
        out["flags"] = "--duration --ratio --resolution --seed --camerafixed --watermark (or the fields)"
        return out


ADAPTER = SeedanceAdapter()
