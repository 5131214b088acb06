"""Seedream (ByteDance image, `doubao-seedream-*`): one synchronous call to
`POST /v1/images/generations` (COMETAPI.md "Seedream"), still run as a job so the
result is copied to storage and the webhook sent.

We ask for `response_format: url`: the answer stays small (it is stored as the
job's upstream payload and re-read by the collector, where a 4K image as base64
would be megabytes), and the signed link lasts 24 h while the collector copies it
within seconds. Per-model sizes and limits (catalog/seedream.toml) follow
Volcengine's model notes; CometAPI's page documents the fields, `2K`/`4K`/WxH
sizes and up to 14 reference images.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.numbers import StrictFloat, StrictInt
from app.providers.base import (
    Adapter,
    CreateResult,
    InputFile,
    ModelSpec,
    PollResult,
    Problems,
    UpstreamRequest,
    ValidationContext,
)
from app.providers.openai_images import immediate, parse_images
from app.providers.shared import inline_image, uploads_among

FIELDS = ("size", "images", "watermark", "max_images", "seed", "guidance_scale")
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


class SeedreamInput(BaseModel):
    """Input for the Seedream models. Which fields a model takes, its named sizes
    (`2K`, `4K`, ...) and the pixel and aspect-ratio limits for `WIDTHxHEIGHT` sizes are
    listed per model by `GET /v1/models`. `max_images` > 1 asks for a set of related
    images (one artifact each: image_1, image_2, ...)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=10000, description="What to generate.")
    size: str | None = Field(None, description="A named size (`2K`) or `WIDTHxHEIGHT`. Default: the model's.")
    images: list[str] | None = Field(
        None, min_length=1, description="Reference images: upload ids (upl_...) or https URLs."
    )
    watermark: bool | None = Field(None, description="Add the provider's watermark.")
    max_images: StrictInt | None = Field(None, ge=1, description="Up to this many related images (4.x models).")
    seed: StrictInt | None = Field(None, ge=-1, le=2147483647, description="3.0 only.")
    guidance_scale: StrictFloat | None = Field(None, description="Prompt adherence (3.0 only).")


def size_problem(spec: ModelSpec, size: str) -> str | None:
    named = spec.option("named_sizes", [])
    if size in named:
        return None
    match = _SIZE.match(size)
    if not match:
        return f"must be {' / '.join(named) + ' or ' if named else ''}WIDTHxHEIGHT"
    width, height = int(match.group(1)), int(match.group(2))
    if spec.option("side_range"):
        low, high = spec.option("side_range")
        if not (low <= width <= high and low <= height <= high):
            return f"each side must be {low}-{high} pixels for {spec.id}"
    if spec.option("pixel_range"):
        low, high = spec.option("pixel_range")
        if not low <= width * height <= high:
            return f"{width}x{height} is {width * height} pixels; {spec.id} takes {low}-{high}"
    if spec.option("aspect_range"):
        low, high = spec.option("aspect_range")
        if not low <= width / height <= high:
            return f"aspect ratio {width}:{height} is outside 1:{1 / low:g} to {high:g}:1"
    return None


class SeedreamAdapter(Adapter):
    family = "seedream"
    input_model = SeedreamInput
    pollable = False

    def check(
        self, spec: ModelSpec, data: SeedreamInput, job_input: dict[str, Any], ctx: ValidationContext,
        problems: Problems,
    ) -> None:
        problems.unsupported(data, spec.option("fields", []), FIELDS)
        size = data.size or spec.option("default_size")
        problem = size_problem(spec, size)
        if problem:
            problems.add("size", f"{size!r}: {problem}", "not_allowed")
        references = data.images or []
        limit = spec.option("max_reference_images", 0)
        if "images" in spec.option("fields", []) and len(references) > limit:
            problems.add("images", f"{spec.id} takes at most {limit} reference images; got {len(references)}",
                         "too_many")
        for index, ref in enumerate(references):
            problems.image(f"images.{index}", ref, ctx)
        if data.max_images is not None and "max_images" in spec.option("fields", []):
            room = spec.option("max_total_images", 15) - len(references)
            if data.max_images > room:
                problems.add("max_images", f"reference and generated images together are at most "
                             f"{spec.option('max_total_images', 15)}; at most {room} here", "too_many")
        bounds = spec.option("guidance_range")
        if data.guidance_scale is not None and bounds and not bounds[0] <= data.guidance_scale <= bounds[1]:
            problems.add("guidance_scale", f"must be from {bounds[0]:g} to {bounds[1]:g}", "out_of_range")
        job_input["size"] = size

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        return uploads_among((f"images.{i}", ref) for i, ref in enumerate(job_input.get("images", [])))

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        body: dict[str, Any] = {"model": spec.upstream_model, "prompt": job_input["prompt"],
                                "size": job_input["size"], "response_format": "url"}
        for name in ("watermark", "seed", "guidance_scale"):
            if name in job_input:
                body[name] = job_input[name]
        if job_input.get("images"):
            body["image"] = [inline_image(ref, f"images.{i}", files) for i, ref in enumerate(job_input["images"])]
        if "max_images" in spec.option("fields", []):
            many = job_input.get("max_images", 1) > 1
            body["sequential_image_generation"] = "auto" if many else "disabled"
            if many:
                body["sequential_image_generation_options"] = {"max_images": job_input["max_images"]}
        return UpstreamRequest("POST", spec.option("create_path"), json=body, timeout=spec.option("create_timeout"))

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        return immediate(spec, body, "image/jpeg")

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        raise NotImplementedError("Seedream answers at create time; there is nothing to poll")

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        return parse_images(body, "image/jpeg")

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        return {"prompt": "a lighthouse on a cliff at dawn, watercolor", "size": spec.option("default_size")}

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        keys = ("fields", "named_sizes", "default_size", "pixel_range", "side_range", "aspect_range",
                "max_reference_images", "max_total_images", "guidance_range")
        return {k: spec.option(k) for k in keys if spec.option(k) is not None} | {"synchronous": True}


ADAPTER = SeedreamAdapter()
