"""Replicate through CometAPI: `POST /replicate/v1/models/{owner/model}/predictions`
with `{"input": {...}}`, then `GET /replicate/v1/predictions/{id}` (COMETAPI.md
"Replicate"). The prediction's own `urls` point at api.replicate.com and are not
used: CometAPI's query endpoint is polled instead. Output links are delivery URLs
that expire, so they are copied at once.

The `replicate` model runs any `owner/model` named in the input; other catalogue
entries pin one upstream model (its id is the upstream name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    parse_timestamp,
    upstream_state,
)
from app.providers.shared import numbered

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$")
# tqdm progress lines in the prediction's logs: " 58%|█████▊    | 29/50 [...]"
_LOG_PERCENT = re.compile(r"(\d{1,3})%\|")


class ReplicateInput(BaseModel):
    """Any Replicate model. For the `replicate` model, name it in `model`
    (`owner/name`); other Replicate catalogue models are pinned and take no
    `model`. `input` is passed through as the model's own inputs (see the model's
    page on replicate.com); only its shape is checked here."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="`owner/name`, e.g. `black-forest-labs/flux-schnell`.")
    input: dict[str, Any] = Field(description="The model's inputs, as Replicate documents them.")


def parse_log_progress(logs: Any) -> int | None:
    matches = _LOG_PERCENT.findall(logs) if isinstance(logs, str) else []
    return min(100, int(matches[-1])) if matches else None


def _output_urls(output: Any) -> list[tuple[str, str]]:
    """(name, url) for each link in `output`: a string, a list of strings, or an object of them."""
    if isinstance(output, str):
        output = [output]
    if isinstance(output, list):
        urls = [u for u in output if isinstance(u, str) and u.startswith(("https://", "http://"))]
        return [(numbered("output", len(urls), i), u) for i, u in enumerate(urls)]
    if isinstance(output, Mapping):
        return [(f"output_{re.sub(r'[^a-z0-9_]+', '_', str(k).lower())}", v) for k, v in output.items()
                if isinstance(v, str) and v.startswith(("https://", "http://"))]
    return []


class ReplicateAdapter(Adapter):
    family = "replicate"
    input_model = ReplicateInput

    def check(
        self, spec: ModelSpec, data: ReplicateInput, job_input: dict[str, Any], ctx: ValidationContext,
        problems: Problems,
    ) -> None:
        if spec.option("any_model"):
            if data.model is None:
                problems.add("model", f"required by {spec.id}: the Replicate model to run, as owner/name", "missing")
            elif not MODEL_NAME.match(data.model):
                problems.add("model", "must be owner/name in lower case, e.g. black-forest-labs/flux-schnell",
                             "invalid_model_name")
            elif spec.option("allowed_owners") and data.model.split("/")[0] not in spec.option("allowed_owners"):
                problems.add("model", f"owner {data.model.split('/')[0]!r} is not allowed; allowed: "
                             + ", ".join(spec.option("allowed_owners")), "not_allowed")
        elif data.model is not None and data.model != spec.upstream_model:
            problems.add("model", f"{spec.id} always runs {spec.upstream_model}; leave model out", "unsupported_field")
        for name in spec.option("required_inputs", []):
            if data.input.get(name) in (None, ""):
                problems.add(f"input.{name}", f"required by {spec.upstream_model}", "missing")

    def _model(self, spec: ModelSpec, job_input: Mapping[str, Any]) -> str:
        return str(job_input["model"]) if spec.option("any_model") else spec.upstream_model

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        path = spec.option("create_path").format(model=self._model(spec, job_input))
        return UpstreamRequest("POST", path, json={"input": job_input["input"]})

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        body = as_object(body, "the create answer")
        prediction_id = body.get("id")
        if not prediction_id:
            raise UnreadableAnswer(f"create answer has no id: {str(body)[:200]}")
        state = upstream_state(spec, body.get("status")) if body.get("status") else None
        immediate = self.parse_poll(spec, str(prediction_id), body) if state is UpstreamState.FAILED else None
        return CreateResult(upstream_id=str(prediction_id), immediate=immediate)

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("fetch_path").format(id=upstream_id))

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the prediction")
        raw = body.get("status")
        state = upstream_state(spec, raw)
        result = PollResult(
            state=state, raw_status=raw, progress=parse_log_progress(body.get("logs")), payload=body,
            started_at=parse_timestamp(body.get("started_at")), finished_at=parse_timestamp(body.get("completed_at")),
        )
        if state is UpstreamState.FAILED:
            error = body.get("error")
            if isinstance(error, Mapping):
                error = error.get("message") or error.get("detail") or str(error)
            result.error_code = "canceled_upstream" if raw in ("canceled", "aborted") else "generation_failed"
            result.error_message = str(error or f"Replicate reported {raw}")
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            # The delivery host's Content-Type names the file type; models differ.
            result.outputs = [ArtifactSource(name, url=url) for name, url in _output_urls(body.get("output"))]
        return result

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        example: dict[str, Any] = {"input": dict(spec.option("example_inputs") or {})}
        if spec.option("any_model"):
            example["model"] = spec.option("example_model")
        return example

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        if spec.option("any_model"):
            return {"model": "any owner/name", "allowed_owners": spec.option("allowed_owners") or "any",
                    "input": "passed through to the model"}
        return {"model": spec.upstream_model, "required_inputs": spec.option("required_inputs", []),
                "input": "passed through to the model"}


ADAPTER = ReplicateAdapter()
