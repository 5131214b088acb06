"""Sora 2 and its `/v1/videos` contract (official and "-all" formats).

Official (CometAPI's official-format pages): multipart create with `model`, `prompt`,
`seconds`, `size` and at most one `input_reference` file, answered with the
documented short object; retrieve with the documented video object; remix of a
completed video; content once completed (an `invalid_request_error` before).
UNVERIFIED, after third-party relays (CometAPI's self-developed pages were not
readable): the -all models' durations, sizes and extra fields, and their completed
retrieve answer's time-limited `video_url`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields, stream_content
from emulator.state import Task

router = APIRouter()

MODELS = {
    "sora-2": {"seconds": {"4", "8", "12"}, "sizes": {"720x1280", "1280x720"}},
    "sora-2-pro": {"seconds": {"4", "8", "12"}, "sizes": {"720x1280", "1280x720", "1024x1792", "1792x1024"}},
    "sora-2-all": {"seconds": {"10", "15"}, "sizes": {"720x1280", "1280x720"}},
    "sora-2-pro-all": {"seconds": {"10", "15", "25"}, "sizes": {"720x1280", "1280x720", "1024x1792", "1792x1024"}},
}
STATUS = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed"}
OFFICIAL_FIELDS = frozenset({"model", "prompt", "seconds", "size", "input_reference"})
ALL_FIELDS = OFFICIAL_FIELDS | {"watermark", "private", "style", "character_url", "character_timestamps",
                                "metadata", "character_from_task", "character_create"}
CREATED_KEYS = ("created_at", "id", "model", "object", "progress", "seconds", "size", "status")
REMIX_KEYS = ("id", "object", "model", "status", "progress", "created_at", "size", "seconds", "remixed_from_video_id")
VARIANT_TYPES = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}


class SharedVideoFamily(Protocol):
    models: set[str]

    async def create(self, request: Request, form: Any) -> Response: ...

    def retrieve(self, request: Request, task: Task) -> Response: ...

    async def content(self, request: Request, task: Task, variant: str) -> Response: ...


# Other families on /v1/videos (Veo) register here by family name. FastAPI answers a
# path from the first route that matches, so these routes hand over their models and tasks.
SHARED_FAMILIES: dict[str, SharedVideoFamily] = {}


def video_object(task: Task, now: float | None = None, base_url: str = "") -> dict[str, Any]:
    phase, progress = task.phase(now)
    status = task.odd_status if phase == "odd" else STATUS[phase]
    completed = phase in ("succeeded", "failed")
    created = int(time.time() - (time.monotonic() - task.created))
    return {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": status,
        "progress": progress,
        "created_at": created,
        "completed_at": created + int(task.job_seconds) if completed else None,
        "expires_at": created + 3600 if phase == "succeeded" else None,
        "prompt": task.prompt,
        "seconds": task.params.get("seconds", ""),
        "size": task.params.get("size", ""),
        "remixed_from_video_id": task.params.get("remixed_from"),
        "error": {"code": "moderation_blocked", "message": "The prompt was rejected by the safety system"}
        if phase == "failed" else None,
    } | ({"video_url": f"{base_url.rstrip('/')}/v1/videos/{task.id}/content"}
         if phase == "succeeded" and task.model.endswith("-all") and base_url else {})


@router.post("/v1/videos")
async def create_video(request: Request) -> Response:
    state = get_state(request)
    form = await request.form()
    model = str(form.get("model") or "")
    prompt = str(form.get("prompt") or "")
    if not model:
        return error(400, "model name is required", code="invalid_request")
    for family in SHARED_FAMILIES.values():
        if model in family.models:
            return await family.create(request, form)
    if model not in MODELS:
        return error(400, f"model {model} is not supported on /v1/videos", code="invalid_request")
    refused = refuse_fields(dict(form), ALL_FIELDS if model.endswith("-all") else OFFICIAL_FIELDS, ("prompt",))
    if refused:
        return refused
    if len(form.getlist("input_reference")) > 1:
        return error(400, "at most one input_reference", code="invalid_request")
    rules = MODELS[model]
    seconds = str(form.get("seconds") or "")
    size = str(form.get("size") or "")
    if seconds and seconds not in rules["seconds"]:
        return error(400, f"invalid seconds {seconds} for {model}", code="invalid_request")
    if size and size not in rules["sizes"]:
        return error(400, f"invalid size {size} for {model}", code="invalid_request")
    reference = form.get("input_reference")
    params: dict[str, Any] = {"seconds": seconds or "4", "size": size or "720x1280"}
    if reference is not None and hasattr(reference, "read"):
        data = await reference.read()
        params["input_reference_bytes"] = len(data)
    for extra in ALL_FIELDS - OFFICIAL_FIELDS:
        if form.get(extra) is not None:
            params[extra] = str(form.get(extra))
    task = state.new_task("sora", model, prompt, "video_", **params)
    delay = state.create_delay(task)
    if delay > 0:
        await asyncio.sleep(delay)
    created = video_object(task)
    return JSONResponse({key: created[key] for key in CREATED_KEYS})


@router.post("/v1/videos/{video_id}/remix")
async def remix_video(video_id: str, request: Request) -> Response:
    state = get_state(request)
    source = state.tasks.get(video_id)
    if source is None or source.family != "sora":
        return error(404, f"video {video_id} not found", code="not_found")
    if source.phase()[0] != "succeeded":
        return error(400, "only a completed video can be remixed", code="invalid_request")
    if source.model.endswith("-all"):
        return error(404, "remix is not available for the self-developed format", code="not_found")
    body = await json_body(request)
    refused = refuse_fields(body, {"prompt"}, ("prompt",))
    if refused:
        return refused
    task = state.new_task("sora", source.model, str(body["prompt"]), "video_",
                          **{**source.params, "remixed_from": video_id})
    remixed = video_object(task)
    return JSONResponse({key: remixed[key] for key in REMIX_KEYS})


@router.get("/v1/videos/{video_id}")
def retrieve_video(video_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(video_id)
    if task is not None and task.family in SHARED_FAMILIES:
        return SHARED_FAMILIES[task.family].retrieve(request, task)
    if task is None or task.family != "sora":
        return error(404, f"video {video_id} not found", code="not_found")
    task.polled()
    state.stats.count("polls", task.model)
    return JSONResponse(video_object(task, base_url=str(request.base_url)))


@router.get("/v1/videos/{video_id}/content")
async def video_content(video_id: str, request: Request, variant: str = "video") -> Response:
    state = get_state(request)
    task = state.tasks.get(video_id)
    if task is not None and task.family in SHARED_FAMILIES:
        return await SHARED_FAMILIES[task.family].content(request, task, variant)
    if task is None or task.family != "sora":
        return error(404, f"video {video_id} not found", code="not_found")
    if task.phase()[0] != "succeeded":
        return error(400, "Video is not ready yet", code="invalid_request", type_="invalid_request_error")
    if variant not in VARIANT_TYPES or variant not in state.config.variants:
        return error(404, f"variant {variant} is not available for this video", code="not_found")
    state.stats.count("downloads", task.model)
    size = task.content_bytes if variant == "video" else max(1024, task.content_bytes // 64)
    return await stream_content(state, task.id, variant, size, VARIANT_TYPES[variant], rate=task.download_rate)
