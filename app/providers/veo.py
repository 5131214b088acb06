"""Veo 3 on CometAPI: the "self-developed" format on `/v1/videos` (shared with Sora).

Create and retrieve follow https://apidoc.cometapi.com/api/video/veo3/self-developed/veo3-async-generation
and .../veo3-retrive: multipart `model`, `prompt`, `size` (16x9 or 9x16) and 0-2
`input_reference` files (first frame, then last frame); 8-second clips.
UNVERIFIED: the completed-state shape was NOT FOUND (COMETAPI.md §2), so where the
video lives is configuration: the first http(s) URL among the catalogue's
`result_url_fields`, else the Sora-style `content_path`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

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
from app.providers.shared import result_url


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class VeoInput(BaseModel):
    """Input for the Veo 3 models (`veo3`, `veo3-fast`, `veo3-pro`).

    Clips are 8 seconds. `input_reference` is empty for text-to-video, one image
    for image-to-video, or two ordered images for first and last frame.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=4000, description="What to generate.")
    size: str | None = Field(None, description="Orientation: `16x9` or `9x16`. Default `16x9`.")
    input_reference: Annotated[list[str], BeforeValidator(_as_list)] | None = Field(
        None,
        description="0-2 images, in order (first frame, last frame): upload ids (`upl_...` "
        "from POST /v1/uploads) or https URLs. A single string is one image.",
    )


class VeoAdapter(Adapter):
    family = "veo"
    input_model = VeoInput

    def check(
        self, spec: ModelSpec, data: VeoInput, job_input: dict[str, Any], ctx: ValidationContext, problems: Problems
    ) -> None:
        size = data.size or spec.option("default_size")
        problems.choice("size", size, spec.option("sizes", []))
        references = data.input_reference or []
        limit = int(spec.option("max_reference_images", 2))
        if len(references) > limit:
            problems.add("input_reference", f"at most {limit} images for {spec.id} (first and last frame); "
                         f"got {len(references)}", "too_many")
        for index, ref in enumerate(references):
            problems.image(f"input_reference.{index}", ref, ctx)
        job_input["size"] = size
        if not references:
            job_input.pop("input_reference", None)

    def input_files(self, spec: ModelSpec, job_input: dict[str, Any]) -> list[tuple[str, str]]:
        return [("input_reference", ref) for ref in job_input.get("input_reference", [])]

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        form = {"model": spec.upstream_model, "prompt": job_input["prompt"], "size": job_input["size"]}
        return UpstreamRequest("POST", spec.option("create_path", "/v1/videos"), data=form, files=files)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        upstream_id = first(body, "id", "task_id") if isinstance(body, dict) else None
        if not isinstance(upstream_id, str):
            raise UnreadableAnswer(f"create answer has no id: {str(body)[:200]}")
        return CreateResult(upstream_id=upstream_id)

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("query_path", "/v1/videos/{id}").format(id=upstream_id))

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the answer")
        raw = body.get("status")
        state = upstream_state(spec, raw)
        result = PollResult(
            state=state, raw_status=raw, progress=parse_progress(body.get("progress")), payload=body,
            started_at=parse_timestamp(body.get("created_at")), finished_at=parse_timestamp(body.get("completed_at")),
        )
        if state is UpstreamState.FAILED:
            error = body.get("error") or {}
            if isinstance(error, str):
                error = {"message": error}
            error = as_object(error, "the error")
            result.error_code = error.get("code") or "generation_failed"
            result.error_message = (error.get("message") or first(body, "fail_reason", "failure")
                                    or f"upstream reported {raw}")
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            url = result_url(body, spec.option("result_url_fields", []))
            if url:
                result.outputs = [ArtifactSource("video", url=url, content_type="video/mp4")]
            else:
                path = spec.option("content_path", "/v1/videos/{id}/content").format(id=upstream_id)
                result.outputs = [ArtifactSource("video", UpstreamRequest("GET", path), content_type="video/mp4")]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        return {
            "prompt": "A hummingbird hovering over a red flower, slow motion, natural light",
            "size": spec.option("default_size"),
        }

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        return {
            "sizes": spec.option("sizes"),
            "seconds": spec.option("seconds"),
            "max_reference_images": spec.option("max_reference_images"),
            "input_reference": "0 images: text to video; 1: first frame; 2: first and last frame",
        }


ADAPTER = VeoAdapter()
