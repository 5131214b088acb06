"""Flux (`/flux/v1/{model}`, then `GET /flux/v1/get_result?id=`).

Documented (COMETAPI.md "Flux"): create with prompt, width, height, seed,
output_format; the query's `status` (Pending / Ready / "Task not found") and
`result.sample`, a time-limited link. The other fields and status words
(`Request Moderated`, `Content Moderated`, `Error`) and the per-model ranges in
`catalog/flux.toml` follow Black Forest Labs' own API, which CometAPI relays.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
from app.providers.shared import inline_image, uploads_among

FIELDS = (
    "width", "height", "aspect_ratio", "seed", "steps", "guidance", "output_format", "safety_tolerance",
    "prompt_upsampling", "raw", "input_image",
)


class FluxInput(BaseModel):
    """Input for the Flux models. Which fields a model takes, and their ranges
    (sizes in multiples of 32, aspect ratios, steps, guidance), are listed per model
    by `GET /v1/models`; anything else is a 422."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=10000, description="What to generate (or, for Kontext, the edit).")
    width: StrictInt | None = Field(None, description="Pixels, a multiple of 32.")
    height: StrictInt | None = Field(None, description="Pixels, a multiple of 32.")
    aspect_ratio: str | None = Field(None, description="e.g. `16:9` (ultra and Kontext models).")
    seed: StrictInt | None = Field(None, ge=0, description="For reproducible results.")
    steps: StrictInt | None = Field(None, description="Diffusion steps (flux-dev, flux-pro).")
    guidance: StrictFloat | None = Field(None, description="Prompt adherence (flux-dev, flux-pro).")
    output_format: Literal["jpeg", "png"] | None = Field(None, description="Default jpeg.")
    safety_tolerance: StrictInt | None = Field(None, ge=0, le=6, description="0 strictest .. 6 most permissive.")
    prompt_upsampling: bool | None = Field(None, description="Let the model expand the prompt.")
    raw: bool | None = Field(None, description="Less processed, more natural look (ultra).")
    input_image: str | None = Field(None, description="Kontext: the image to edit, an upload id or an https URL.")


class FluxAdapter(Adapter):
    family = "flux"
    input_model = FluxInput
    error_codes = {
        "Task not found": "task_not_found",
        "Request Moderated": "moderation_blocked",
        "Content Moderated": "moderation_blocked",
    }

    def check(
        self, spec: ModelSpec, data: FluxInput, job_input: dict[str, Any], ctx: ValidationContext, problems: Problems
    ) -> None:
        problems.unsupported(data, spec.option("fields", []), FIELDS)
        multiple = spec.option("size_multiple", 32)
        low, high = spec.option("size_range", [256, 1440])
        for name in ("width", "height"):
            value = getattr(data, name)
            if value is not None and not (low <= value <= high and value % multiple == 0):
                problems.add(name, f"must be a multiple of {multiple} from {low} to {high} for {spec.id}",
                             "out_of_range")
        if data.aspect_ratio is not None and "aspect_ratio" in spec.option("fields", []):
            problems.choice("aspect_ratio", data.aspect_ratio, spec.option("aspect_ratios", []))
        for name, bounds in (("steps", spec.option("steps_range")), ("guidance", spec.option("guidance_range"))):
            value = getattr(data, name)
            if value is not None and bounds and not bounds[0] <= value <= bounds[1]:
                problems.add(name, f"must be from {bounds[0]:g} to {bounds[1]:g} for {spec.id}", "out_of_range")
        if data.input_image is not None:
            problems.image("input_image", data.input_image, ctx)

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        return uploads_among([("input_image", job_input.get("input_image"))])

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        body = dict(job_input)
        if "input_image" in body:
            body["input_image"] = inline_image(body["input_image"], "input_image", files, data_uri=False)
        return UpstreamRequest("POST", spec.option("create_path").format(model=spec.upstream_model), json=body)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        task_id = first(body, "id", "task_id", "data.id", "data.task_id")
        if not task_id or not isinstance(task_id, str | int):
            raise UnreadableAnswer(f"create answer has no task id: {str(body)[:200]}")
        return CreateResult(upstream_id=str(task_id))

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("result_path"), params={"id": upstream_id})

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the answer")
        raw = body.get("status")
        state = upstream_state(spec, raw)
        sample = body.get("result") if isinstance(body.get("result"), dict) else {}
        result = PollResult(
            state=state, raw_status=raw, progress=parse_progress(body.get("progress")), payload=body,
            started_at=parse_timestamp(sample.get("start_time")), finished_at=parse_timestamp(sample.get("end_time")),
        )
        if state is UpstreamState.FAILED:
            result.error_code = self.error_codes.get(raw or "", "generation_failed")
            details = body.get("details") or body.get("error")
            result.error_message = f"Flux reported {raw}" + (f": {details}" if details else "")
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            url = sample.get("sample")
            if isinstance(url, str) and url:
                # The delivery host's Content-Type wins; this is the fallback.
                result.outputs = [ArtifactSource("image", url=url, content_type="image/jpeg")]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        example: dict[str, Any] = {"prompt": "a lighthouse on a cliff at dawn, photorealistic"}
        if "width" in spec.option("fields", []):
            example |= {"width": 1024, "height": 768}
        elif "aspect_ratio" in spec.option("fields", []):
            example["aspect_ratio"] = "16:9"
        return example

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        keys = ("fields", "size_range", "size_multiple", "aspect_ratios", "steps_range", "guidance_range")
        return {k: spec.option(k) for k in keys if spec.option(k) is not None}


ADAPTER = FluxAdapter()
