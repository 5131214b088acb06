"""Seedance (ByteDance video) on `/volc/v3/contents/generations/tasks`.

Create takes `{model, content: [{type: text, text: "... --duration 5 --ratio 16:9"},
{type: image_url, image_url: {url}, role?}...], callback_url?}` and answers `{"id"}`;
get answers the documented object and, when done, `content.video_url` (served by this
host). UNVERIFIED, Volcengine's own (CometAPI documents only `succeeded`): the other
status words (queued, running, failed) and a failure's `error: {code, message}`.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields, stream_content
from emulator.state import Task

router = APIRouter()

PATH = "/volc/v3/contents/generations/tasks"
DURATIONS = {"5", "10"}
RATIOS = {"16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"}
RESOLUTIONS = {"480p", "720p", "1080p"}
ALIASES = {"rs": "resolution", "rt": "ratio", "dur": "duration", "cf": "camerafixed", "wm": "watermark",
           "fps": "framespersecond"}
STATUS = {"queued": "queued", "running": "running", "succeeded": "succeeded", "failed": "failed"}
FLAG = re.compile(r"--(\w+)\s+(\S+)")
FILES = "/_emulator/files/seedance"


def task_object(task: Task, base_url: str) -> dict[str, Any]:
    phase, _progress = task.phase()
    created = int(time.time() - (time.monotonic() - task.created))
    done = phase in ("succeeded", "failed")
    out: dict[str, Any] = {
        "id": task.id, "model": task.model, "status": task.odd_status if phase == "odd" else STATUS[phase],
        "created_at": created, "updated_at": created + (int(task.job_seconds) if done else 0),
        "resolution": task.params["resolution"], "duration": int(task.params["duration"]),
        "ratio": task.params["ratio"], "framespersecond": 24,
    }
    if phase == "succeeded":
        # a signed object-storage link, `&` and all: a mangled copy is refused
        signed = "X-Tos-Signature=abc&X-Tos-Expires=86400"
        out["content"] = {"video_url": f"{base_url.rstrip('/')}{FILES}/{task.id}.mp4?{signed}"}
    elif phase == "failed":
        out["error"] = {"code": "OutputVideoSensitiveContentDetected",
                        "message": "The request failed because the output video may contain sensitive information."}
    return out


@router.post(PATH)
async def create(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, {"model", "content", "callback_url"}, ("model", "content"))
    if refused:
        return refused
    model = str(body.get("model") or "")
    if not model.startswith("doubao-seedance-"):
        return error(400, f"model {model!r} is not a Seedance model", code="invalid_request")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return error(400, "content must be a non-empty list", code="invalid_request")
    if any(not isinstance(c, dict) or not set(c) <= {"type", "text", "image_url", "role"} for c in content):
        return error(400, "content items are {type, text} or {type, image_url: {url}, role?}", code="invalid_request")
    texts = [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
    images = [c for c in content if isinstance(c, dict) and c.get("type") == "image_url"]
    text = " ".join(texts)
    flags = {ALIASES.get(k, k): v for k, v in FLAG.findall(text)}
    duration = flags.get("duration", "5")
    ratio = flags.get("ratio", "16:9")
    resolution = flags.get("resolution", "720p")
    if duration not in DURATIONS:
        return error(400, f"--duration {duration} is not supported", code="InvalidParameter")
    if ratio not in RATIOS:
        return error(400, f"--ratio {ratio} is not supported", code="InvalidParameter")
    if resolution not in RESOLUTIONS:
        return error(400, f"--resolution {resolution} is not supported", code="InvalidParameter")
    if not text.strip() and not images:
        return error(400, "a text prompt or an image is required", code="InvalidParameter")
    prompt = FLAG.sub("", text).strip()
    task = state.new_task(
        "seedance", model, prompt or "(image only)", "cgt-", duration=duration, ratio=ratio,
        resolution=resolution, flags=flags, text=text,
        images=[{"role": i.get("role"), "url": str((i.get("image_url") or {}).get("url", ""))[:40]} for i in images],
    )
    return JSONResponse({"id": task.id})


@router.get(PATH + "/{task_id}")
def get_task(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != "seedance":
        return error(404, f"task {task_id} not found", code="ResourceNotFound")
    task.polled()
    state.stats.count("polls", task.model)
    return JSONResponse(task_object(task, str(request.base_url)))


@router.get(FILES + "/{task_id}.mp4")
async def seedance_file(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != "seedance" or task.phase()[0] != "succeeded":
        return error(404, "file not found", code="not_found")
    if request.query_params.get("X-Tos-Signature") != "abc":
        return error(403, "AccessDenied: the signed URL was altered", code="AccessDenied")
    state.stats.count("downloads", task.model)
    return await stream_content(state, task.id, "video", task.content_bytes, "video/mp4", rate=task.download_rate)
