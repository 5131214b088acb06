"""Runway's `/runwayml/v1/...` contract: image to video, video to video, upscale,
and the task query.

The create bodies follow Runway's public API (CometAPI's create pages were NOT
FOUND). CometAPI documents two answers for the same query, Runway's own task and
its `{code, data: {..., data: <task>}}` wrapper; the emulator alternates between
them poll by poll, and the first poll of a task answers `task_not_exist`, as a
task just created may upstream.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, stream_content
from emulator.state import Task

router = APIRouter()

# path -> (action, models, ratios, required keys)
TASKS: dict[str, tuple[str, set[str], set[str], tuple[str, ...]]] = {
    "image_to_video": ("IMAGE_TO_VIDEO", {"gen4_turbo", "gen3a_turbo"},
                       {"1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672", "1280:768", "768:1280"},
                       ("promptImage",)),
    "video_to_video": ("VIDEO_TO_VIDEO", {"gen4_aleph"},
                       {"1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672", "848:480", "640:480"},
                       ("videoUri", "promptText")),
    "video_upscale": ("VIDEO_UPSCALE", {"upscale_v1"}, set(), ("videoUri",)),
}
RAW = {"queued": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED"}
WRAPPED = {"queued": "QUEUED", "running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILURE"}
FAILURE = ("SAFETY.INPUT.TEXT", "The prompt did not pass Runway's content moderation")
FILES = "/_emulator/files/runway"


def _created(task: Task) -> float:
    return time.time() - (time.monotonic() - task.created)


def raw_task(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    out: dict[str, Any] = {
        "id": task.id, "status": task.odd_status if phase == "odd" else RAW[phase],
        "createdAt": datetime.fromtimestamp(_created(task), UTC).isoformat().replace("+00:00", "Z"),
    }
    if phase in ("running", "odd"):
        out["progress"] = round(progress / 100, 2)
    if phase == "succeeded":
        out["output"] = [f"{base_url.rstrip('/')}{FILES}/{task.id}.mp4"]
    elif phase == "failed":
        out["failureCode"], out["failure"] = FAILURE
    return out


def wrapped_task(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    created = int(_created(task))
    done = phase in ("succeeded", "failed")
    return {"code": "success", "message": "", "data": {
        "task_id": task.id, "action": task.params["action"],
        "status": task.odd_status if phase == "odd" else WRAPPED[phase],
        "fail_reason": FAILURE[1] if phase == "failed" else "",
        "submit_time": created, "start_time": created, "finish_time": created + int(task.job_seconds) if done else 0,
        "progress": f"{progress}%", "data": raw_task(task, base_url),
    }}


@router.post("/runwayml/v1/{kind}")
async def create(kind: str, request: Request) -> Response:
    state = get_state(request)
    if kind not in TASKS:
        return error(404, f"unknown Runway endpoint {kind}", code="not_found")
    action, models, ratios, required = TASKS[kind]
    try:
        body = await request.json()
    except ValueError:
        return error(400, "request body is not JSON", code="invalid_request")
    model = str(body.get("model") or "")
    if model not in models:
        return error(400, f"model {model!r} is not available for {kind}", code="invalid_request")
    for key in required:
        if not body.get(key):
            return error(400, f"{key} is required", code="invalid_request")
    if ratios and body.get("ratio") not in ratios:
        return error(400, f"invalid ratio {body.get('ratio')}", code="invalid_request")
    if kind == "image_to_video" and body.get("duration", 5) not in (5, 10):
        return error(400, f"invalid duration {body.get('duration')}", code="invalid_request")
    task = state.new_task(
        "runway", model, str(body.get("promptText") or "(no prompt)"), "", action=action,
        version=request.headers.get("x-runway-version"),
        **{k: v for k, v in body.items() if k in ("ratio", "duration", "seed", "videoUri")},
        prompt_image=str(body.get("promptImage", ""))[:40], references=len(body.get("references") or []),
    )
    return JSONResponse({"id": task.id})


@router.get("/runwayml/v1/tasks/{task_id}")
def query(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != "runway":
        return error(404, f"task {task_id} not found", code="not_found")
    task.polled()
    state.stats.count("polls", task.model)
    if task.polls == 1:
        return JSONResponse({"code": "task_not_exist", "message": "task_not_exist", "data": None})
    base = str(request.base_url)
    return JSONResponse(wrapped_task(task, base) if task.polls % 2 == 0 else raw_task(task, base))


@router.get(FILES + "/{task_id}.mp4")
async def runway_file(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != "runway" or task.phase()[0] != "succeeded":
        return error(404, "file not found", code="not_found")
    state.stats.count("downloads", task.model)
    return await stream_content(state, task.id, "video", task.content_bytes, "video/mp4", rate=task.download_rate)
