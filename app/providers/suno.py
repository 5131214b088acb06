"""Suno (`/suno/...`): music (inspiration, custom, continuation) and lyrics.

Documented (COMETAPI.md "Suno"): the submit paths and modes, `GET /suno/fetch/{id}`
and the batch `POST /suno/fetch` with `{ids, action}` whose tasks carry `status`,
`progress`, `fail_reason`, `submit_time`/`start_time`/`finish_time` and the clips in
`data`. A generated clip is continued with its task's `task_id` next to
`continue_clip_id` and `continue_at`; `task: "upload_extend"` is for continuing an
*uploaded* clip only ("Continue Custom Audio"), and gateways of the same envelopes
refuse a `continue_clip_id` without its `task_id`.
NOT FOUND, so UNVERIFIED: the full status vocabulary, the clip field names, and the
submit answer's task id in `data` (third-party docs of the same gateway family).
Both live in `catalog/suno.toml` (`statuses`, `clip_*_paths`): the status words
follow the task shape of the gateway family CometAPI's Suno API comes from, and the
clip fields follow Suno's own clip objects. Correcting them is a catalogue change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, cast

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
from app.providers.http import UpstreamError
from app.providers.shared import batch_tasks, numbered

MUSIC_FIELDS = (
    "mode", "gpt_description_prompt", "make_instrumental", "prompt", "tags", "title",
    "continue_clip_id", "parent_job_id", "continue_clip", "continue_at",
)
MODE_FIELDS = {
    "inspiration": {"mode", "gpt_description_prompt", "make_instrumental"},
    "custom": {"mode", "prompt", "tags", "title", "make_instrumental"},
    "continuation": {"mode", "prompt", "tags", "title", "continue_clip_id", "parent_job_id", "continue_clip",
                     "continue_at"},
}


class SunoInput(BaseModel):
    """A song (`suno-*` models) or lyrics (`suno-lyrics`).

    Songs come in three modes, picked by `mode` or by the fields given:
    **inspiration** (`gpt_description_prompt`, optional `make_instrumental`),
    **custom** (`prompt` = the lyrics, `tags` = the style, `title`; lyrics may be left
    out when `make_instrumental` is true) and **continuation** of an existing clip
    (`continue_at` seconds, and either `parent_job_id` of a succeeded Suno job of
    yours plus `continue_clip`, its 1-based clip number, or `continue_clip_id` of audio
    uploaded to CometAPI's Suno).
    Lengths allowed per model are listed by `GET /v1/models`. For lyrics give only
    `prompt`, the idea to write about.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["inspiration", "custom", "continuation"] | None = Field(None, description="Default: from the fields.")
    gpt_description_prompt: str | None = Field(None, min_length=1, description="Inspiration: what the song is about.")
    make_instrumental: bool | None = Field(None, description="No vocals.")
    prompt: str | None = Field(None, min_length=1, description="Custom/continuation: the lyrics. Lyrics: the idea.")
    tags: str | None = Field(None, min_length=1, description="Custom/continuation: the style, e.g. `dreamy synth-pop`.")
    title: str | None = Field(None, min_length=1, description="Custom/continuation: the song's title.")
    continue_clip_id: str | None = Field(
        None, description="Continuation of audio uploaded to CometAPI's Suno (not made by a job of yours): its clip id."
    )
    parent_job_id: str | None = Field(None, description="Continuation: a succeeded Suno job of yours.")
    continue_clip: StrictInt | None = Field(None, ge=1, description="Continuation: which clip of the parent job (1-based).")
    continue_at: StrictFloat | None = Field(None, gt=0, description="Continuation: seconds into the clip to continue from.")


def _clips(task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    data = task.get("data")
    if isinstance(data, Mapping):
        data = [data]
    return [c for c in data if isinstance(c, Mapping)] if isinstance(data, list) else []


def _task(body: Any) -> Mapping[str, Any]:
    """The task object, from a single fetch (`{code, data: task}`), a batch entry or a stored payload."""
    if isinstance(body, Mapping) and "task_id" not in body and isinstance(body.get("data"), Mapping):
        return cast(Mapping[str, Any], body["data"])
    return cast(Mapping[str, Any], body)


class SunoAdapter(Adapter):
    family = "suno"
    input_model = SunoInput
    batch_poll_size = 50

    def check(
        self, spec: ModelSpec, data: SunoInput, job_input: dict[str, Any], ctx: ValidationContext, problems: Problems
    ) -> None:
        if spec.option("action") == "LYRICS":
            problems.unsupported(data, {"prompt"}, MUSIC_FIELDS)
            if data.prompt is None:
                problems.add("prompt", "required: what the lyrics are about", "missing")
            problems.max_length("prompt", data.prompt, spec.option("lyrics_prompt_max_length"))
            return

        mode = data.mode or self._infer_mode(data)
        for name in MUSIC_FIELDS:
            if name not in MODE_FIELDS[mode] and getattr(data, name) is not None:
                problems.add(name, f"not used in {mode} mode", "unsupported_field")
        job_input["mode"] = mode
        if mode == "inspiration" and data.gpt_description_prompt is None:
            problems.add("gpt_description_prompt", "required in inspiration mode", "missing")
        if mode == "custom":
            if data.prompt is None and not data.make_instrumental:
                problems.add("prompt", "the lyrics are required in custom mode unless make_instrumental is true",
                             "missing")
            for name in ("tags", "title"):
                if getattr(data, name) is None:
                    problems.add(name, "required in custom mode", "missing")
        if mode == "continuation":
            self._check_continuation(data, job_input, ctx, problems)
        problems.max_length("gpt_description_prompt", data.gpt_description_prompt,
                            spec.option("description_max_length"))
        problems.max_length("prompt", data.prompt, spec.option("prompt_max_length"))
        problems.max_length("tags", data.tags, spec.option("tags_max_length"))
        problems.max_length("title", data.title, spec.option("title_max_length"))

    @staticmethod
    def _infer_mode(data: SunoInput) -> str:
        if data.continue_clip_id or data.parent_job_id or data.continue_at is not None:
            return "continuation"
        return "inspiration" if data.gpt_description_prompt is not None else "custom"

    def _check_continuation(self, data: SunoInput, out: dict[str, Any], ctx: ValidationContext,
                            problems: Problems) -> None:
        if data.continue_at is None:
            problems.add("continue_at", "required: seconds into the clip to continue from", "missing")
        if (data.continue_clip_id is None) == (data.parent_job_id is None):
            problems.add("continue_clip_id", "give either continue_clip_id or parent_job_id (with continue_clip)",
                         "missing" if data.continue_clip_id is None else "conflict")
            return
        if data.parent_job_id is None:
            return
        parent = ctx.get_job(data.parent_job_id)
        if parent is None:
            problems.add("parent_job_id", f"no job {data.parent_job_id} of yours exists", "not_found")
        elif parent.family != self.family or parent.status != "succeeded":
            problems.add("parent_job_id", f"job {parent.id} is not a succeeded Suno job", "invalid_reference")
        elif _task(parent.upstream_payload or {}).get("action", "MUSIC") != "MUSIC":
            problems.add("parent_job_id", f"job {parent.id} wrote lyrics; only a song can be continued",
                         "invalid_reference")
        else:
            clips = _clips(_task(parent.upstream_payload or {}))
            number = data.continue_clip or 1
            paths = problems.spec.option("clip_id_paths")
            clip_id = first(clips[number - 1], *paths) if number <= len(clips) else None
            if clip_id is None:
                problems.add("continue_clip", f"job {parent.id} has {len(clips)} clip(s); there is no clip {number}",
                             "not_found")
            else:
                out["continue_clip"] = number
                out["continue_clip_id"] = str(clip_id)

    def build_create(
        self, spec: ModelSpec, job_input: dict[str, Any], files: list[InputFile], parent: Any
    ) -> UpstreamRequest:
        if spec.option("action") == "LYRICS":
            return UpstreamRequest("POST", spec.option("submit_path"), json={"prompt": job_input["prompt"]})
        mode = job_input["mode"]
        body: dict[str, Any] = {"mv": spec.upstream_model}
        if mode == "inspiration":
            body |= {"gpt_description_prompt": job_input["gpt_description_prompt"],
                     "make_instrumental": bool(job_input.get("make_instrumental")), "prompt": ""}
        else:
            body |= {k: job_input[k] for k in ("prompt", "tags", "title") if k in job_input}
            body.setdefault("prompt", "")
            if mode == "custom":
                body["make_instrumental"] = bool(job_input.get("make_instrumental"))
            elif "parent_job_id" in job_input:
                if parent is None or not parent.upstream_id:
                    raise ValueError(f"the parent job {job_input['parent_job_id']} has no upstream task to continue")
                body |= {"task_id": parent.upstream_id, "continue_clip_id": job_input["continue_clip_id"],
                         "continue_at": job_input["continue_at"]}
            else:
                body |= {"continue_clip_id": job_input["continue_clip_id"], "continue_at": job_input["continue_at"],
                         "task": spec.option("upload_continuation_task")}
        return UpstreamRequest("POST", spec.option("submit_path"), json=body)

    def parse_create(self, spec: ModelSpec, body: Any) -> CreateResult:
        body = as_object(body, "the submit answer")
        task_id = body.get("data")
        if body.get("code") == "success" and isinstance(task_id, str | int) and str(task_id):
            return CreateResult(upstream_id=str(task_id))
        code = str(body.get("code") or "rejected")
        raise UpstreamError(f"Suno refused the submission: {body.get('message') or code}",
                            status=200, code=f"suno_{code}", retryable=False)

    def build_poll(self, spec: ModelSpec, upstream_id: str) -> UpstreamRequest:
        return UpstreamRequest("GET", spec.option("fetch_path").format(id=upstream_id))

    def batch_key(self, spec: ModelSpec) -> str:
        return str(spec.option("action"))

    def build_batch_poll(self, spec: ModelSpec, upstream_ids: list[str]) -> UpstreamRequest:
        return UpstreamRequest("POST", spec.option("batch_path"), json={"ids": upstream_ids,
                                                                         "action": spec.option("action")})

    def parse_batch_poll(self, spec: ModelSpec, upstream_ids: list[str], body: Any) -> dict[str, PollResult]:
        wanted = set(upstream_ids)
        return {
            str(task["task_id"]): self.parse_poll(spec, str(task["task_id"]), task)
            for task in batch_tasks(body)
            if isinstance(task, Mapping) and str(task.get("task_id")) in wanted
        }

    def parse_poll(self, spec: ModelSpec, upstream_id: str, body: Any) -> PollResult:
        task = as_object(_task(body), "the task")
        raw = task.get("status")
        state = upstream_state(spec, raw)
        result = PollResult(
            state=state, raw_status=raw, progress=parse_progress(task.get("progress")), payload=dict(task),
            started_at=parse_timestamp(task.get("start_time")), finished_at=parse_timestamp(task.get("finish_time")),
        )
        if state is UpstreamState.FAILED:
            result.error_code = "generation_failed"
            result.error_message = str(task.get("fail_reason") or f"Suno reported {raw}")
        elif state is UpstreamState.SUCCEEDED:
            if not isinstance(task.get("data") or [], list | Mapping):
                raise UnreadableAnswer(f"the task's data is not a list of clips: {str(task.get('data'))[:200]}")
            result.progress = 100
            result.outputs = self._lyrics(spec, task) if spec.option("action") == "LYRICS" else self._songs(spec, task)
        return result

    @staticmethod
    def _songs(spec: ModelSpec, task: Mapping[str, Any]) -> list[ArtifactSource]:
        outputs = []
        for index, clip in enumerate(_clips(task), start=1):
            audio = first(clip, *spec.option("clip_audio_paths"))
            if isinstance(audio, str) and audio:
                outputs.append(ArtifactSource(f"clip_{index}", url=audio, content_type="audio/mpeg"))
            cover = first(clip, *spec.option("clip_cover_paths"))
            if isinstance(cover, str) and cover:
                outputs.append(ArtifactSource(f"clip_{index}_cover", url=cover, optional=True,
                                              content_type="image/jpeg"))
        return outputs

    @staticmethod
    def _lyrics(spec: ModelSpec, task: Mapping[str, Any]) -> list[ArtifactSource]:
        sheets = [c for c in _clips(task) if first(c, *spec.option("lyrics_text_paths"))]
        return [
            ArtifactSource(
                numbered("lyrics", len(sheets), index),
                data=json.dumps({"title": sheet.get("title") or "",
                                 "text": first(sheet, *spec.option("lyrics_text_paths"))}, ensure_ascii=False).encode(),
                content_type="application/json",
            )
            for index, sheet in enumerate(sheets)
        ]

    def example_input(self, spec: ModelSpec) -> dict[str, Any]:
        if spec.option("action") == "LYRICS":
            return {"prompt": "a sea shanty about a lighthouse keeper's cat"}
        return {"gpt_description_prompt": "an upbeat synth-pop song about a lighthouse at dawn"}

    def constraints(self, spec: ModelSpec) -> dict[str, Any]:
        if spec.option("action") == "LYRICS":
            return {"action": "LYRICS", "prompt_max_length": spec.option("lyrics_prompt_max_length")}
        return {
            "action": "MUSIC",
            "mv": spec.upstream_model,
            "modes": {mode: sorted(fields - {"mode"}) for mode, fields in MODE_FIELDS.items()},
            "prompt_max_length": spec.option("prompt_max_length"),
            "tags_max_length": spec.option("tags_max_length"),
            "title_max_length": spec.option("title_max_length"),
            "description_max_length": spec.option("description_max_length"),
            "artifacts": "clip_1, clip_2, ... (audio) and clip_N_cover (image) per clip",
        }


ADAPTER = SunoAdapter()
