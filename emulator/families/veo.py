"""Veo 3 on `/v1/videos` (CometAPI's "self-developed" format).

Sora's module owns the `/v1/videos` routes and hands Veo's models and tasks to
this one. Create and retrieve follow CometAPI's Veo pages: multipart `model`,
`prompt`, `size` and 0-2 `input_reference` files; the create answer names the
resolved provider model (e.g. `veo_3_1-4K`) with an empty `seconds`; retrieve answers
`id`, `task_id`, `size`, `model`, `object`, `status`, `progress`, `created_at`.
UNVERIFIED: the finished and failed shapes are NOT FOUND on CometAPI. When done this
answers the result under `metadata.url`, where gateways of the same lineage put it,
and `/v1/videos/{id}/content` serves the same bytes (whether CometAPI offers it for
Veo is not documented either); a failure carries an OpenAI-style `error`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, refuse_fields, stream_content
from emulator.families.sora import SHARED_FAMILIES
from emulator.state import Task

router = APIRouter()

# alias -> the provider model the answers name
MODELS = {"veo3": "veo_3", "veo3-fast": "veo_3-fast", "veo3-pro": "veo_3_1-4K"}
SIZES = {"16x9", "9x16"}
STATUS = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed"}
FILES = "/_emulator/files/veo"


FIELDS = frozenset({"model", "prompt", "size", "input_reference"})


def video_object(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    created = int(time.time() - (time.monotonic() - task.created))
    out: dict[str, Any] = {
        "id": task.id, "task_id": task.id, "size": task.params["size"], "model": MODELS[task.model],
        "object": "video", "status": task.odd_status if phase == "odd" else STATUS[phase], "progress": progress,
        "created_at": created,
    }
    if phase == "succeeded":
        out["metadata"] = {"url": f"{base_url.rstrip('/')}{FILES}/{task.id}.mp4"}
    elif phase == "failed":
        out["error"] = {"code": "content_policy_violation",
                        "message": "Veo could not generate this video: the prompt was flagged by the safety filter"}
    return out


class Veo:
    models = set(MODELS)

    async def create(self, request: Request, form: Any) -> Response:
        state = get_state(request)
        model = str(form.get("model"))
        prompt = str(form.get("prompt") or "")
        refused = refuse_fields(dict(form), FIELDS, ("prompt",))
        if refused:
            return refused
        size = str(form.get("size") or "16x9")
        if size not in SIZES:
            return error(400, f"invalid size {size}: use 16x9 or 9x16", code="invalid_request")
        references = [f for f in form.getlist("input_reference") if hasattr(f, "read")]
        if len(references) > 2:
            return error(400, "at most 2 input_reference images (first and last frame)", code="invalid_request")
        sizes = [len(await f.read()) for f in references]
        task = state.new_task("veo", model, prompt, "task_", size=size, reference_bytes=sizes)
        created = int(time.time() - (time.monotonic() - task.created))
        return JSONResponse({"created_at": created, "id": task.id, "model": MODELS[model], "object": "video",
                             "progress": 0, "seconds": "", "size": size, "status": "queued"})

    def retrieve(self, request: Request, task: Task) -> Response:
        state = get_state(request)
        task.polled()
        state.stats.count("polls", task.model)
        return JSONResponse(video_object(task, str(request.base_url)))

    async def content(self, request: Request, task: Task, variant: str) -> Response:
        return await _download(request, task)


async def _download(request: Request, task: Task) -> Response:
    state = get_state(request)
    if task.phase()[0] != "succeeded":
        return error(400, "Video is not ready yet", code="invalid_request", type_="invalid_request_error")
    state.stats.count("downloads", task.model)
    return await stream_content(state, task.id, "video", task.content_bytes, "video/mp4", rate=task.download_rate)


SHARED_FAMILIES["veo"] = Veo()


@router.get(FILES + "/{task_id}.mp4")
async def veo_file(task_id: str, request: Request) -> Response:
    task = get_state(request).tasks.get(task_id)
    if task is None or task.family != "veo":
        return error(404, "file not found", code="not_found")
    return await _download(request, task)
