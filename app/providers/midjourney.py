"""Midjourney (`/mj/...`): imagine, and follow-up actions as jobs of their own.

Contracts: https://apidoc.cometapi.com/fr/api/image/midjourney/imagine,
.../task-fetching-api/fetch-single-task, .../task-fetching-api/list-by-condition
and https://cometapi.mintlify.app/it/api/image/midjourney/action (COMETAPI.md).
An action (upscale, variation, zoom, reroll, pan, ...) is a job whose input names
its parent job and a button by label (`U1`, `V2`, `Zoom Out 2x`) or a configured
alias (`reroll` -> 🔄); the custom id is read from the parent's latest fetch body,
never hard-coded, because Midjourney changes it per task.
"""

from __future__ import annotations

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
    parse_progress,
    parse_timestamp,
    upstream_state,
)
from app.providers.http import UpstreamError
from app.providers.shared import batch_tasks

# Submit answers other than `code: 1` follow the midjourney-proxy convention CometAPI's
# MJ API is built on (third-party, UNVERIFIED): 21 existing task / modal wait and 22
# queued still carry a task id; 23 is a full queue, worth retrying.
ACCEPTED_CODES = {1, 21, 22}
RETRYABLE_CODES = {23}
REJECTION_CODES = {3: "not_found", 4: "invalid_request", 9: "failure", 23: "queue_full", 24: "banned_prompt"}


class MidjourneyInput(BaseModel):
    """Either an imagine (`prompt`), or an action on a succeeded Midjourney job of
    yours: `parent_job_id` plus `button`, the label of one of the parent's buttons
    (`U1`-`U4` upscale, `V1`-`V4` variation, `Zoom Out 2x`, `Vary (Strong)`, ...) or an
    alias such as `reroll` (see `GET /v1/models`). Buttons that open a form (Custom
    Zoom, Vary (Region)) are not supported.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(
        None, min_length=1, max_length=8000,
        description="What to imagine, with any Midjourney parameters (`--ar 3:2`, `--v 7`, ...).",
    )
    parent_job_id: str | None = Field(None, description="A succeeded Midjourney job of yours to act on.")
    button: str | None = Field(
        None, min_length=1, max_length=100, description="The parent's button to press, by label."
    )


def button_label(button: Mapping[str, Any]) -> str:
    return str(button.get("label") or button.get("emoji") or "").strip()


def find_button(buttons: Any, wanted: str, aliases: Mapping[str, str]) -> Mapping[str, Any] | None:
    """The button whose label (or, for icon-only buttons, emoji) is `wanted` or its alias."""
    target = str(aliases.get(wanted.strip().lower(), wanted)).strip().casefold()
    candidates = [b for b in buttons or [] if isinstance(b, Mapping) and b.get("customId")]
    for button in candidates:
        if str(button.get("label") or "").strip().casefold() == target:
            return button
    for button in candidates:
        if not button.get("label") and str(button.get("emoji") or "").strip().casefold() == target:
            return button
    return None


class MidjourneyAdapter(Adapter):
    family = "midjourney"
    input_model = MidjourneyInput
    batch_poll_size = 50

    def check(
        self, spec: ModelSpec, data: MidjourneyInput, job_input: dict[str, Any], ctx: ValidationContext,
        problems: Problems,
    ) -> None:
        if data.parent_job_id is None and data.button is None:
            if data.prompt is None:
                problems.add("prompt", "required for an imagine (or give parent_job_id and button)", "missing")
            return
        if data.prompt is not None:
            problems.add("prompt", "an action takes no prompt; it acts on the parent's result", "unsupported_field")
        if data.parent_job_id is None or data.button is None:
            missing = "parent_job_id" if data.parent_job_id is None else "button"
            problems.add(missing, "parent_job_id and button must be given together", "missing")
        else:
            self._check_parent(spec, data.parent_job_id, data.button, ctx, problems)

    def _check_parent(self, spec: ModelSpec, parent_id: str, wanted: str, ctx: ValidationContext,
                      problems: Problems) -> None:
        parent = ctx.get_job(parent_id)
        if parent is None:
            problems.add("parent_job_id", f"no job {parent_id} of yours exists", "not_found")
        elif parent.family != self.family:
            problems.add("parent_job_id", f"job {parent.id} is a {parent.model} job, not Midjourney",
                         "invalid_reference")
        elif parent.status != "succeeded" or not parent.upstream_id:
            problems.add("parent_job_id", f"job {parent.id} is {parent.status}; only a succeeded job has buttons",
                         "invalid_reference")
        else:
            buttons = (parent.upstream_payload or {}).get("buttons") or []
            button = find_button(buttons, wanted, self._aliases(spec))
            if button is None:
                labels = ", ".join(button_label(b) for b in buttons if button_label(b)) or "none"
                problems.add("button", f"job {parent.id} has no button {wanted!r}; its buttons: {labels}",
                             "unknown_button")
            elif button_label(button) in spec.option("modal_buttons", []):
                problems.add("button", f"{button_label(button)!r} opens a form (a modal), which jobs do not support",
                             "unsupported_button")

    @staticmethod
    def _aliases(spec: ModelSpec) -> Mapping[str, str]:
        return {k.lower(): v for k, v in (spec.option("button_aliases") or {}).items()}

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        if "button" not in job_input:
            body = {"prompt": job_input["prompt"], "botType": spec.upstream_model}
            return UpstreamRequest("POST", spec.option("submit_path"), json=body)
        buttons = ((parent.upstream_payload if parent else None) or {}).get("buttons")
        button = find_button(buttons, job_input["button"], self._aliases(spec))
        if parent is None or button is None:
            raise ValueError(f"button {job_input['button']!r} is no longer offered by the parent job")
        body = {"customId": button["customId"], "taskId": parent.upstream_id}
        return UpstreamRequest("POST", spec.option("action_path"), json=body)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        body = as_object(body, "the submit answer")
        code = body.get("code")
        result = body.get("result")
        description = str(body.get("description") or "")
        if not isinstance(code, int):
            raise UnreadableAnswer(f"submit answer has no code: {str(body)[:200]}")
        if code in ACCEPTED_CODES and result:
            return CreateResult(upstream_id=str(result))
        name = REJECTION_CODES.get(code, f"code_{code}")
        # The upstream answered and created nothing: a rejection, never an unknown outcome.
        raise UpstreamError(
            f"Midjourney refused the submission (code {code}): {description or 'no description'}",
            status=200, code=f"midjourney_{name}", retryable=code in RETRYABLE_CODES,
        )

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("fetch_path").format(id=upstream_id))

    def build_batch_poll(self, spec: ModelSpec, upstream_ids: list[str]) -> UpstreamRequest:
        return UpstreamRequest("POST", spec.option("batch_path"), json={"ids": upstream_ids})

    def parse_batch_poll(self, spec: ModelSpec, upstream_ids: list[str], body: Any) -> dict[str, PollResult]:
        wanted = set(upstream_ids)
        return {
            str(task["id"]): self.parse_poll(spec, str(task["id"]), task)
            for task in batch_tasks(body)
            if isinstance(task, Mapping) and str(task.get("id")) in wanted
        }

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        body = as_object(body, "the task")
        raw = body.get("status")
        state = upstream_state(spec, raw)
        result = PollResult(
            state=state, raw_status=raw, progress=parse_progress(body.get("progress")), payload=body,
            started_at=parse_timestamp(body.get("startTime")), finished_at=parse_timestamp(body.get("finishTime")),
        )
        if raw == "MODAL":
            result.error_code = "modal_required"
            result.error_message = "the button opened a form (e.g. Custom Zoom), which jobs do not support"
        elif state is UpstreamState.FAILED:
            result.error_code = "generation_failed"
            result.error_message = str(body.get("failReason") or f"Midjourney reported {raw}")
        elif state is UpstreamState.SUCCEEDED:
            result.progress = 100
            result.outputs = self._outputs(body)
        return result

    @staticmethod
    def _outputs(body: Mapping[str, Any]) -> list[ArtifactSource]:
        outputs = []
        if body.get("imageUrl"):
            outputs.append(ArtifactSource("image", url=str(body["imageUrl"]), content_type="image/png"))
        if body.get("videoUrl"):
            outputs.append(ArtifactSource("video", url=str(body["videoUrl"]), content_type="video/mp4"))
        # Per-image links point at provider storage and may expire: copy them, but never fail for them.
        singles = body.get("image_urls") or body.get("imageUrls") or []
        if not isinstance(singles, list):
            raise UnreadableAnswer(f"image_urls is not a list: {str(singles)[:200]}")
        for index, item in enumerate(singles):
            url = item.get("url") if isinstance(item, Mapping) else item
            if isinstance(url, str) and url:
                outputs.append(ArtifactSource(f"image_{index + 1}", url=url, optional=True, content_type="image/png"))
        return outputs

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        return {"prompt": "a lighthouse on a cliff at dawn, watercolor --ar 3:2"}

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        return {
            "bot_type": spec.upstream_model,
            "actions": "input.parent_job_id (a succeeded Midjourney job) + input.button (one of its button labels)",
            "button_aliases": dict(spec.option("button_aliases") or {}),
            "unsupported_buttons": list(spec.option("modal_buttons", [])),
        }


ADAPTER = MidjourneyAdapter()
