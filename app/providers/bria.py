"""Bria image generation and editing.

Generate (https://apidoc.cometapi.com/api/image/bria/generate-image): `POST
/bria/text-to-image` is **synchronous** on CometAPI; it answers `{"result": [{"urls":
[...], "seed", "uuid"}]}` at once, with no `request_id` to poll. The job goes from
submitting straight to collecting, like Seedream's.

Edit (https://apidoc.cometapi.com/it/api/image/bria/image-editing): `POST
/bria/image/edit/{action}` for `erase`, `gen_fill`, `expand`, `enhance`,
`increase_resolution` and `replace_background`; `mask` is required for erase, gen_fill
and expand, `prompt` for gen_fill and replace_background; `image` (and `mask`) go as an
https URL or a base64 data URI; `sync` is fixed by CometAPI. It answers a `request_id`,
polled with `GET /bria/{request_id}` (https://apidoc.cometapi.com/api/image/bria/query-status):
`{result: {seed, image_url, refined_prompt}, status, request_id}`, Bria's status words
IN_PROGRESS / COMPLETED / ERROR / UNKNOWN, and a failure as HTTP 200 with an `error`.
The fields each action takes beyond those CometAPI lists follow Bria's own pages, to
which CometAPI's points (`catalog/bria.toml`, `operations`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.numbers import StrictInt
from app.providers.base import (
    URL_SCHEMES,
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
from app.providers.shared import inline_image, numbered, uploads_among

FIELDS = ("operation", "prompt", "negative_prompt", "image", "mask", "aspect_ratio", "seed")
IMAGE_FIELDS = ("image", "mask")


class BriaInput(BaseModel):
    """Generate (`bria-generate`: `prompt`, optional `negative_prompt`,
    `aspect_ratio`, `seed`) or edit (`bria-edit`: an `operation` and the fields it
    needs, listed per operation by `GET /v1/models`; `image` and `mask` are upload ids
    or https URLs)."""

    model_config = ConfigDict(extra="forbid")

    operation: str | None = Field(None, description="Edit: erase, gen_fill, expand, enhance, increase_resolution or "
                                  "replace_background.")
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
        operations: Mapping[str, Mapping[str, list[str]]] = spec.option("operations") or {}
        if operations:
            if data.operation is None:
                problems.add("operation", f"required; one of {', '.join(operations)}", "missing")
                return
            problems.choice("operation", data.operation, operations)
            fields = operations.get(data.operation, {})
            needed = list(fields.get("required", []))
            allowed = {"operation", *needed, *fields.get("optional", [])}
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
                problems.image(name, getattr(data, name), ctx, https_only=True)

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        return uploads_among([(name, job_input.get(name)) for name in IMAGE_FIELDS])

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        body = {k: v for k, v in job_input.items() if k != "operation"}
        for name in IMAGE_FIELDS:
            if name in body:
                body[name] = inline_image(body[name], name, files)
        path = spec.option("create_path").format(operation=job_input.get("operation", ""))
        return UpstreamRequest("POST", path, json=body, timeout=spec.option("create_timeout"))

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        body = as_object(body, "the create answer")
        if spec.option("synchronous"):
            images = self._generated(body)
            return CreateResult(upstream_id=self._generated_id(spec, body), immediate=images)
        request_id = first(body, "request_id")
        if not request_id or not isinstance(request_id, str | int):
            raise UnreadableAnswer(f"create answer has no request_id: {str(body)[:200]}")
        return CreateResult(upstream_id=str(request_id))

    @staticmethod
    def _generated_id(spec: ModelSpec, body: Mapping[str, Any]) -> str:
        """The answer has no request id; the first image's `uuid` names the call."""
        uuid = first(body, "result.0.uuid")
        return str(uuid) if isinstance(uuid, str | int) else f"{spec.upstream_model}@sync"

    @staticmethod
    def _generated(body: Mapping[str, Any]) -> PollResult:
        results = body.get("result")
        if not isinstance(results, list):
            raise UnreadableAnswer(f"the answer's result is not a list: {str(results)[:200]}")
        urls: list[str] = []
        for item in results:
            links = as_object(item, "a result").get("urls") or []
            if not isinstance(links, list):
                raise UnreadableAnswer(f"a result's urls is not a list: {str(links)[:200]}")
            urls += [u for u in links if isinstance(u, str) and u.startswith(URL_SCHEMES)]
        if not urls:
            return PollResult(UpstreamState.FAILED, raw_status="no_image", payload=dict(body),
                              error_code="no_image", error_message="Bria answered without an image")
        # The delivery host's Content-Type wins; this is the fallback.
        outputs = [ArtifactSource(numbered("image", len(urls), i), url=url, content_type="image/png")
                   for i, url in enumerate(urls)]
        return PollResult(UpstreamState.SUCCEEDED, raw_status="completed", progress=100, outputs=outputs,
                          payload=dict(body))

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("status_path").format(id=upstream_id))

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the answer")
        if spec.option("synchronous"):  # the collector re-reads the stored generate answer
            return self._generated(body)
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
            url = first(body, "result.image_url")
            if isinstance(url, str) and url:
                result.outputs = [ArtifactSource("image", url=url, content_type="image/png")]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        return dict(spec.option("example_input"))

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        keys = ("operations", "fields", "aspect_ratios", "synchronous")
        return {k: spec.option(k) for k in keys if spec.option(k)} | {"create_path": spec.option("create_path")}


ADAPTER = BriaAdapter()
