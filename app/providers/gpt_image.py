"""gpt-image-1 through CometAPI's OpenAI-compatible `POST /v1/images/generations`:
synchronous, like Seedream, and run as a job all the same.

gpt-image-1 always answers `b64_json` (OpenAI's reference: `response_format` is
not supported for it), so its images arrive inline and are stored from the
answer itself. Field limits follow OpenAI's Images API reference and live in
`catalog/gpt_image.toml`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.numbers import StrictInt
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

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class GptImageInput(BaseModel):
    """Input for gpt-image-1. `n` images (artifacts image, or image_1..image_n).
    Sizes and qualities per model are listed by `GET /v1/models`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=32000, description="What to generate.")
    size: str | None = Field(None, description="e.g. `1024x1024`, `1536x1024`, `1024x1536` or `auto`.")
    quality: str | None = Field(None, description="`low`, `medium`, `high` or `auto`.")
    n: StrictInt | None = Field(None, ge=1, description="How many images.")
    background: Literal["transparent", "opaque", "auto"] | None = Field(
        None, description="`transparent` needs output_format png or webp."
    )
    output_format: Literal["png", "jpeg", "webp"] | None = Field(None, description="Default png.")
    output_compression: StrictInt | None = Field(None, ge=0, le=100, description="jpeg and webp only.")
    moderation: Literal["low", "auto"] | None = None


class GptImageAdapter(Adapter):
    family = "gpt_image"
    input_model = GptImageInput
    pollable = False

    def check(
        self, spec: ModelSpec, data: GptImageInput, job_input: dict[str, Any], ctx: ValidationContext,
        problems: Problems,
    ) -> None:
        if data.size is not None:
            problems.choice("size", data.size, spec.option("sizes"))
        if data.quality is not None:
            problems.choice("quality", data.quality, spec.option("qualities"))
        if data.n is not None and data.n > spec.option("max_n", 1):
            problems.add("n", f"at most {spec.option('max_n', 1)} for {spec.id}", "too_many")
        fmt = data.output_format or "png"
        if data.background == "transparent" and fmt == "jpeg":
            problems.add("background", "transparent needs output_format png or webp", "conflict")
        if data.output_compression is not None and fmt == "png":
            problems.add("output_compression", "only for output_format jpeg or webp", "unsupported_field")

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        body = {"model": spec.upstream_model, **job_input}
        return UpstreamRequest("POST", spec.option("create_path"), json=body, timeout=spec.option("create_timeout"))

    @staticmethod
    def _content_type(body: Any) -> str:
        fmt = body.get("output_format") if isinstance(body, dict) else None
        return CONTENT_TYPES.get(str(fmt), "image/png")

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        return immediate(spec, body, self._content_type(body))

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        raise NotImplementedError("gpt-image answers at create time; there is nothing to poll")

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        return parse_images(body, self._content_type(body))

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        return {"prompt": "a lighthouse on a cliff at dawn, watercolor", "size": "1024x1024", "quality": "low"}

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        return {"sizes": spec.option("sizes"), "qualities": spec.option("qualities"), "max_n": spec.option("max_n"),
                "synchronous": True, "answer": "b64_json, stored from the answer"}


ADAPTER = GptImageAdapter()
