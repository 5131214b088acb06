"""Sora 2 (`/v1/videos`): official models and CometAPI's "-all" format.

Official: https://apidoc.cometapi.com/api/video/sora-2/official/create-video; the
result is fetched from `/v1/videos/{id}/content`.
The "-all" (self-developed) format documents create and retrieve only, no content or
remix page; a generic retrieve page names a time-limited download URL on completed
tasks, which is used when the answer has one (the catalogue's `result_url_fields`),
`/v1/videos/{id}/content` otherwise. Its extra fields (watermark, private, style,
character_*) and the storyboard prompt format follow public third-party docs and are
UNVERIFIED (see COMETAPI.md §1b). No page says a storyboard's shot durations must add
up to `seconds` (its example does): a mismatch is a warning on the job's timeline, not
a refusal. Constraints per model live in `catalog/sora.toml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.providers.base import (
    Adapter,
    ArtifactSource,
    CreateResult,
    InputFile,
    InputWarning,
    ModelSpec,
    PollResult,
    Problems,
    UnreadableAnswer,
    UpstreamRequest,
    UpstreamState,
    ValidationContext,
    as_object,
    parse_progress,
    upstream_state,
)
from app.providers.shared import result_url

ALL_FORMAT_ONLY = (
    "watermark", "private", "style", "character_url", "character_timestamps",
    "character_from_task", "character_create",
)


def _to_str(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


class SoraInput(BaseModel):
    """Input for `sora-2`, `sora-2-pro`, `sora-2-all` and `sora-2-pro-all`.

    `seconds` and `size` allowed per model are listed by `GET /v1/models`. On the
    -all models a prompt that starts with `Shot 1:` is a storyboard: shots `Shot N:` /
    `duration: Xsec` / `Scene: ...`; shots numbered other than 1, 2, ... or durations
    that do not add up to `seconds` are accepted with a warning on the job's timeline.
    Fields marked "-all" are accepted by the -all models only.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=8000, description="What to generate, or a storyboard.")
    seconds: Annotated[str, BeforeValidator(_to_str)] | None = Field(
        None, description="Clip length in seconds (string or number). Default: the model's shortest."
    )
    size: str | None = Field(None, description="WIDTHxHEIGHT, e.g. 1280x720.")
    input_reference: str | None = Field(
        None,
        description="First-frame image: an upload id (`upl_...` from POST /v1/uploads) or an "
        "https URL. Its dimensions must equal `size`.",
    )
    remix_of: str | None = Field(
        None, description="Id of a succeeded Sora job of yours to remix (only `prompt` may be set)."
    )
    watermark: bool | None = Field(None, description="-all only.")
    private: bool | None = Field(None, description="-all only: hidden, cannot be remixed.")
    style: Literal["winter", "comic", "news"] | None = Field(None, description="-all only.")
    character_url: str | None = Field(None, description="-all only: video URL to build a character from.")
    character_timestamps: str | None = Field(
        None, description='-all only: "start,end" seconds into character_url, 1-3 s apart.'
    )
    character_from_task: str | None = Field(None, description="-all only: a completed upstream task id.")
    character_create: bool | None = Field(None, description="-all only: make a character from the output.")


_SHOT_HEADER = re.compile(r"^[ \t]*shot[ \t]*(\d+)[ \t]*:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)
_DURATION = re.compile(r"^[ \t]*duration[ \t]*:[ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_DURATION_VALUE = re.compile(r"^(\d+(?:\.\d+)?)[ \t]*(?:s|sec|secs|second|seconds)?$", re.IGNORECASE)
_SCENE = re.compile(r"^[ \t]*scene[ \t]*:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)


@dataclass
class Shot:
    number: int
    duration: float | None
    scene: str


def is_storyboard(prompt: str) -> bool:
    return bool(re.match(r"\s*shot[ \t]*\d+[ \t]*:", prompt, re.IGNORECASE))


def storyboard_problems(prompt: str, seconds: float) -> tuple[list[str], list[tuple[str, str]]]:
    """A storyboard's problems: (errors: shots not in the documented `Shot N:` /
    `duration: Xsec` / `Scene: ...` shape, one message each; warnings: what the docs do
    not require, as (code, message): numbering, and durations that do not add up)."""
    headers = list(_SHOT_HEADER.finditer(prompt))
    errors: list[str] = []
    warnings: list[tuple[str, str]] = []
    shots: list[Shot] = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(prompt)
        body = header.group(2) + "\n" + prompt[header.end() : end]
        number = int(header.group(1))
        label = f"shot {index + 1} (\"Shot {number}:\")"
        if number != index + 1:
            warnings.append(("storyboard_numbering", f"{label}: shots are usually numbered from 1 in order; "
                             f"expected Shot {index + 1}"))
        durations = _DURATION.findall(body)
        duration: float | None = None
        if not durations:
            errors.append(f"{label}: missing a 'duration: Xsec' line")
        elif len(durations) > 1:
            errors.append(f"{label}: has {len(durations)} duration lines; give exactly one")
        else:
            match = _DURATION_VALUE.match(durations[0])
            if not match:
                errors.append(f"{label}: duration {durations[0]!r} is not a number of seconds like '7.5sec'")
            elif float(match.group(1)) <= 0:
                errors.append(f"{label}: duration must be more than 0 seconds")
            else:
                duration = float(match.group(1))
        scenes = [s.strip() for s in _SCENE.findall(body)]
        if not scenes or not scenes[0]:
            errors.append(f"{label}: missing a non-empty 'Scene: ...' line")
        shots.append(Shot(number, duration, scenes[0] if scenes else ""))
    if shots and all(s.duration is not None for s in shots):
        total = sum(s.duration or 0 for s in shots)
        if abs(total - seconds) > 0.01:
            parts = " + ".join(f"{s.duration:g}" for s in shots)
            warnings.append(("storyboard_duration_mismatch",
                             f"shot durations add up to {total:g} s ({parts}) but seconds is {seconds:g}; "
                             f"the upstream decides what it renders"))
    return errors, warnings


def _timestamps_error(value: str) -> str | None:
    parts = value.split(",")
    if len(parts) != 2:
        return 'must be "start,end" in seconds, e.g. "1,3"'
    try:
        start, end = (float(p.strip()) for p in parts)
    except ValueError:
        return 'must be "start,end" in seconds, e.g. "1,3"'
    if start < 0:
        return "start must not be negative"
    if not 1 <= end - start <= 3:
        return f"the range must be 1-3 s long; {start:g} to {end:g} is {end - start:g} s"
    return None


class SoraAdapter(Adapter):
    family = "sora"
    input_model = SoraInput

    def check(
        self, spec: ModelSpec, data: SoraInput, job_input: dict[str, Any], ctx: ValidationContext, problems: Problems
    ) -> None:
        is_all = spec.option("format") == "all"
        if not is_all:
            for name in ALL_FORMAT_ONLY:
                if getattr(data, name) is not None:
                    problems.add(name, f"not supported by {spec.id}; only the -all models accept it",
                                 "unsupported_field")
        if data.remix_of is not None:
            self._check_remix(spec, data, ctx, problems)
            return

        seconds = data.seconds or spec.option("default_seconds")
        allowed_seconds = [str(s) for s in spec.option("seconds", [])]
        problems.choice("seconds", seconds, allowed_seconds)
        size = data.size or spec.option("default_size")
        problems.choice("size", size, spec.option("sizes", []))

        if is_all and is_storyboard(data.prompt) and seconds in allowed_seconds:
            for problem in storyboard_problems(data.prompt, float(seconds))[0]:
                problems.add("prompt", f"storyboard: {problem}", "invalid_storyboard")

        if data.input_reference is not None:
            upload = problems.image("input_reference", data.input_reference, ctx)
            if upload is not None and upload.width and upload.height and f"{upload.width}x{upload.height}" != size:
                problems.add("input_reference", f"image is {upload.width}x{upload.height} but size is {size}; "
                             "they must match", "size_mismatch")

        if is_all:
            if (data.character_url is None) != (data.character_timestamps is None):
                missing = "character_timestamps" if data.character_timestamps is None else "character_url"
                problems.add(missing, "character_url and character_timestamps must be given together", "missing")
            if data.character_url is not None:
                problems.url("character_url", data.character_url)
            if data.character_timestamps is not None:
                timestamps_problem = _timestamps_error(data.character_timestamps)
                if timestamps_problem:
                    problems.add("character_timestamps", timestamps_problem, "invalid_range")

        job_input["seconds"] = seconds
        job_input["size"] = size

    @staticmethod
    def _check_remix(spec: ModelSpec, data: SoraInput, ctx: ValidationContext, problems: Problems) -> None:
        assert data.remix_of is not None
        for name in ("seconds", "size", "input_reference", *ALL_FORMAT_ONLY):
            if getattr(data, name) is not None:
                problems.add(name, "a remix takes only a prompt; the clip keeps its source's settings",
                             "unsupported_field")
        if spec.option("format") == "all":
            problems.add("remix_of", f"CometAPI documents no remix for {spec.id} (only for the official models)",
                         "unsupported_field")
            return
        parent = ctx.get_job(data.remix_of)
        if parent is None:
            problems.add("remix_of", f"no job {data.remix_of} of yours exists", "not_found")
        elif parent.family != "sora":
            problems.add("remix_of", f"job {parent.id} is a {parent.model} job, not a Sora video", "invalid_reference")
        elif parent.status != "succeeded" or not parent.upstream_id:
            problems.add("remix_of", f"job {parent.id} is {parent.status}; only a succeeded video can be remixed",
                         "invalid_reference")
        elif parent.model != spec.id:
            problems.add("remix_of", f"job {parent.id} used {parent.model}; remix it with the same model",
                         "invalid_reference")

    def input_warnings(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[InputWarning]:
        prompt, seconds = job_input.get("prompt", ""), job_input.get("seconds")
        if spec.option("format") != "all" or not seconds or not is_storyboard(prompt):
            return []
        return [InputWarning("prompt", f"storyboard: {message}", code)
                for code, message in storyboard_problems(prompt, float(seconds))[1]]

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        ref = job_input.get("input_reference")
        return [("input_reference", ref)] if ref else []

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        if job_input.get("remix_of"):
            return UpstreamRequest("POST", f"/v1/videos/{parent.upstream_id}/remix", json={"prompt": job_input["prompt"]})
        form = {
            "model": spec.upstream_model,
            "prompt": job_input["prompt"],
            "seconds": str(job_input["seconds"]),
            "size": job_input["size"],
        }
        for name in ALL_FORMAT_ONLY:
            if name in job_input:
                value = job_input[name]
                form[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return UpstreamRequest("POST", "/v1/videos", data=form, files=files)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        upstream_id = body.get("id") if isinstance(body, dict) else None
        if not upstream_id:
            raise UnreadableAnswer(f"create answer has no id: {str(body)[:200]}")
        return CreateResult(upstream_id=str(upstream_id))

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", f"/v1/videos/{upstream_id}")

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the answer")
        raw = body.get("status")
        state = upstream_state(spec, raw)
        result = PollResult(state=state, raw_status=raw, progress=parse_progress(body.get("progress")), payload=body)
        if state is UpstreamState.FAILED:
            error = body.get("error") or {}
            if isinstance(error, str):
                error = {"message": error}
            error = as_object(error, "the error")
            result.error_code = error.get("code") or ("expired" if raw == "expired" else "generation_failed")
            result.error_message = error.get("message") or f"upstream reported {raw}"
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            content = f"/v1/videos/{upstream_id}/content"
            url = result_url(body, spec.option("result_url_fields", []))
            if url:  # the -all format's time-limited download URL
                result.outputs = [ArtifactSource("video", url=url, content_type="video/mp4")]
                return result
            if spec.option("format") == "all":  # no content page documents variants for -all
                result.outputs = [ArtifactSource("video", UpstreamRequest("GET", content), content_type="video/mp4")]
                return result
            result.outputs = [
                ArtifactSource("video", UpstreamRequest("GET", content), content_type="video/mp4"),
                ArtifactSource(
                    "thumbnail", UpstreamRequest("GET", content, params={"variant": "thumbnail"}),
                    optional=True, content_type="image/webp",
                ),
                ArtifactSource(
                    "spritesheet", UpstreamRequest("GET", content, params={"variant": "spritesheet"}),
                    optional=True, content_type="image/jpeg",
                ),
            ]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        return {
            "prompt": "A paper boat drifting down a rain-soaked street at dusk, cinematic",
            "seconds": spec.option("default_seconds"),
            "size": spec.option("default_size"),
        }

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        out = {
            "seconds": spec.option("seconds"),
            "sizes": spec.option("sizes"),
            "format": spec.option("format"),
            "storyboard": "-all only: prompt may be `Shot N:` / `duration: Xsec` / `Scene: ...` blocks; durations "
            "that do not add up to seconds are a timeline warning" if spec.option("format") == "all" else None,
            "input_reference": "image whose dimensions equal size",
            "remix": "input.remix_of: a succeeded job of the same model",
        }
        return {key: value for key, value in out.items() if value is not None}


ADAPTER = SoraAdapter()
