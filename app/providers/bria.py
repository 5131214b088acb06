"""Bria image generation and editing.

Documented (COMETAPI.md "Bria"): the query `GET /bria/{request_id}` answering
`{result: {seed, image_url, refined_prompt}, status, request_id}`, for the image
editing tasks; Bria's own status words IN_PROGRESS / COMPLETED / ERROR / UNKNOWN,
and a job failure as HTTP 200 with an `error` object.
NOT FOUND, so UNVERIFIED: CometAPI's create paths and bodies for generate and
edit. They follow Bria's v2 API (`/image/generate`, `/image/edit/{operation}`,
`sync: false`, an answer carrying `request_id`) under CometAPI's `/bria` root, and
live in `catalog/bria.toml` (`create_path`, `operations`) to be corrected there.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    upstream_state,
)
from app.providers.shared import inline_image, uploads_among

FIELDS = ("operation", "prompt", "negative_prompt", "image", "mask", "aspect_ratio", "seed")
IMAGE_FIELDS = ("image", "mask")


class BriaInput(BaseModel):
    """Generate (`bria-generate`: `prompt`, optional `negative_prompt`,
    `aspect_ratio`, `seed`) or edit (`bria-edit`: an `operation` and the fields it
    needs, listed per operation by `GET /v1/models`; `image` and `mask` are upload ids
    or https URLs)."""

    model_config = ConfigDict(extra="forbid")

    operation: str | None = Field(None, description="Edit: e.g. remove_background, erase, gen_fill, expand.")
    prompt: str | None = Field(None, min_length=1, max_length=5000, description="What to generate or fill in.")
    negative_prompt: str | None = Field(None, min_length=1, max_length=5000, description="What to avoid.")
    image: str | None = Field(None, description="Edit: the image, an upload id (upl_...) or an https URL.")
    mask: str | None = Field(None, description="Edit: the mask (white = change), an upload id or an https URL.")
    aspect_ratio: str | None = Field(None, description="e.g. `1:1`, `16:9`.")
    seed: StrictInt | None = Field(None, ge=0)


class BriaAdapter(Adapter):
    family = "bria"
    input_model = BriaInput

    def check(
        self, spec: ModelSpec, data: BriaInput, job_input: dict[str, Any], ctx: ValidationContext, problems: Problems
    ) -> None:
        operations: Mapping[str, list[str]] = spec.option("operations") or {}
        if operations:
            if data.operation is None:
                problems.add("operation", f"required; one of {', '.join(operations)}", "missing")
                return
            problems.choice("operation", data.operation, operations)
            needed = operations.get(data.operation, [])
            allowed = {"operation", *needed, *spec.option("optional_fields", [])}
        else:
            needed = ["prompt"]
            allowed = set(spec.option("fields", []))
        problems.unsupported(data, allowed, FIELDS)
        for name in needed:
            if getattr(data, name) is None:
                problems.add(name, f"required by {data.operation or spec.id}", "missing")
        if data.aspect_ratio is not None and spec.option("aspect_ratios"):
            problems.choice("aspect_ratio", data.aspect_ratio, spec.option("aspect_ratios"))
        for name in IMAGE_FIELDS:
            if getattr(data, name) is not None:
                problems.image(name, getattr(data, name), ctx)

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        return uploads_among([(name, job_input.get(name)) for name in IMAGE_FIELDS])

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        body = {k: v for k, v in job_input.items() if k != "operation"}
        for name in IMAGE_FIELDS:
            if name in body:
                body[name] = inline_image(body[name], name, files, data_uri=False)
        body["sync"] = False
        path = spec.option("create_path").format(operation=job_input.get("operation", ""))
        return UpstreamRequest("POST", path, json=body)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        request_id = first(body, "request_id", "data.request_id", "id")
        if not request_id or not isinstance(request_id, str | int):
            raise UnreadableAnswer(f"create answer has no request_id: {str(body)[:200]}")
        return CreateResult(upstream_id=str(request_id))

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("status_path").format(id=upstream_id))

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the answer")
        raw = body.get("status")
        state = upstream_state(spec, raw)
        result = PollResult(state=state, raw_status=raw, payload=body)
        if state is UpstreamState.FAILED:
            error = body.get("error")
            message = first(error, "message", "details") if isinstance(error, Mapping) else error
            result.error_code = "generation_failed"
            result.error_message = str(message or f"Bria reported {raw}")
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            url = first(body, "result.image_url", "result.images.0.url", "result.urls.0")
            if isinstance(url, str) and url:
                result.outputs = [ArtifactSource("image", url=url, content_type="image/png")]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        return dict(spec.option("example_input"))

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        keys = ("operations", "optional_fields", "fields", "aspect_ratios")
        return {k: spec.option(k) for k in keys if spec.option(k)} | {"create_path": spec.option("create_path")}


ADAPTER = BriaAdapter()
