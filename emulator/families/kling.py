"""Kling's `/kling/v1/...` contract: text to video, image to video, image
generation and Omni video, each with its query.

Answers use Kling's envelope (`code` 0, `data.task_id`, `data.task_status`,
millisecond times). The Omni query answers in the other documented shape, CometAPI's
task wrapper (`data.status` SUCCESS..., `data.progress` "58%", Kling's payload under
`data.data`), so both shapes are exercised. Results are served from this host.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, stream_content
from emulator.state import Task

router = APIRouter()

ASPECT_RATIOS = {"16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"}
# action path -> (prompt limit, result kind, needs an image)
ACTIONS = {
    "videos/text2video": (500, "videos", False),
    "videos/image2video": (500, "videos", True),
    "images/generations": (500, "images", False),
    "videos/omni-video": (2500, "videos", False),
}
STATUS = {"queued": "submitted", "running": "processing", "succeeded": "succeed", "failed": "failed"}
WRAPPED = {"queued": "SUBMITTED", "running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILURE"}
FAIL_MESSAGE = "Failure to pass the risk control system"
FILES = "/_emulator/files/kling"


def kling_error(message: str, code: int = 1201, status: int = 400) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "request_id": uuid.uuid4().hex, "data": None},
                        status_code=status)


def _ms(task: Task, offset: float = 0) -> int:
    return int((time.time() - (time.monotonic() - task.created) + offset) * 1000)


def kling_data(task: Task, base_url: str) -> dict[str, Any]:
    phase, _progress = task.phase()
    data: dict[str, Any] = {
        "task_id": task.id, "task_info": {}, "created_at": _ms(task),
        "updated_at": _ms(task, task.job_seconds) if phase in ("succeeded", "failed") else _ms(task, 0.1),
        "task_status": task.odd_status if phase == "odd" else STATUS[phase], "task_result": {},
    }
    if phase == "succeeded":
        kind = task.params["kind"]
        if kind == "images":
            data["task_result"] = {"images": [
                {"index": i, "url": f"{base_url.rstrip('/')}{FILES}/{task.id}/{i}.png"}
                for i in range(task.params["n"])
            ]}
        else:
            data["task_result"] = {"videos": [
                {"id": f"{task.id}-0", "url": f"{base_url.rstrip('/')}{FILES}/{task.id}/0.mp4",
                 "duration": task.params["duration"]},
            ]}
    elif phase == "failed":
        data["task_status_msg"] = FAIL_MESSAGE
    return data


def wrapped(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    seconds = _ms(task) // 1000
    return {
        "task_id": task.id, "action": "OMNI_VIDEO", "status": task.odd_status if phase == "odd" else WRAPPED[phase],
        "fail_reason": FAIL_MESSAGE if phase == "failed" else "", "submit_time": seconds, "start_time": seconds,
        "finish_time": seconds + int(task.job_seconds) if phase in ("succeeded", "failed") else 0,
        "progress": f"{progress}%", "data": kling_data(task, base_url),
    }


async def _create(request: Request, action: str) -> Response:
    state = get_state(request)
    try:
        body = await request.json()
    except ValueError:
        return kling_error("request body is not JSON")
    limit, kind, needs_image = ACTIONS[action]
    prompt = str(body.get("prompt") or "")
    if not prompt and not needs_image:
        return kling_error("prompt is required")
    if len(prompt) > limit:
        return kling_error(f"prompt must be at most {limit} characters")
    if len(str(body.get("negative_prompt") or "")) > 200:
        return kling_error("negative_prompt must be at most 200 characters")
    if "aspect_ratio" in body and body["aspect_ratio"] not in ASPECT_RATIOS:
        return kling_error(f"invalid aspect_ratio {body['aspect_ratio']}")
    if str(body.get("duration", "5")) not in {"5", "10"}:
        return kling_error(f"invalid duration {body.get('duration')}")
    if body.get("mode", "std") not in {"std", "pro"}:
        return kling_error(f"invalid mode {body.get('mode')}")
    cfg = body.get("cfg_scale", 0.5)
    if not isinstance(cfg, int | float) or not 0 <= cfg <= 1:
        return kling_error("cfg_scale must be between 0 and 1")
    if needs_image and not body.get("image"):
        return kling_error("image is required")
    n = int(body.get("n", 1))
    images = [body[k] for k in ("image", "image_tail") if body.get(k)] + [
        i.get("image_url") for i in body.get("image_list", []) if isinstance(i, dict)]
    task = state.new_task(
        "kling", str(body.get("model_name") or "kling-v1"), prompt or "(image only)", "",
        action=action, kind=kind, n=n, duration=str(body.get("duration", "5")),
        mode=body.get("mode", "std"), aspect_ratio=body.get("aspect_ratio"), camera_control=body.get("camera_control"),
        images=[i if str(i).startswith("http") else f"base64:{len(str(i))}" for i in images],
    )
    data = {"task_id": task.id, "task_status": "submitted", "created_at": _ms(task), "updated_at": _ms(task)}
    return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": uuid.uuid4().hex, "data": data})


@router.post("/kling/v1/videos/text2video")
async def text2video(request: Request) -> Response:
    return await _create(request, "videos/text2video")


@router.post("/kling/v1/videos/image2video")
async def image2video(request: Request) -> Response:
    return await _create(request, "videos/image2video")


@router.post("/kling/v1/images/generations")
async def image_generation(request: Request) -> Response:
    return await _create(request, "images/generations")


@router.post("/kling/v1/videos/omni-video")
async def omni_video(request: Request) -> Response:
    return await _create(request, "videos/omni-video")


@router.get("/kling/v1/{action}/{action2}/{task_id}")
def query(action: str, action2: str, task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != "kling" or task.params["action"] != f"{action}/{action2}":
        return kling_error(f"task {task_id} not found", code=1203, status=404)
    task.polled()
    state.stats.count("polls", task.model)
    base = str(request.base_url)
    data = wrapped(task, base) if action2 == "omni-video" else kling_data(task, base)
    return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": uuid.uuid4().hex, "data": data})


@router.get(FILES + "/{task_id}/{name}")
async def kling_file(task_id: str, name: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != "kling" or task.phase()[0] != "succeeded":
        return error(404, "file not found", code="not_found")
    state.stats.count("downloads", task.model)
    media_type = "image/png" if name.endswith(".png") else "video/mp4"
    size = task.content_bytes if media_type == "video/mp4" else max(1024, task.content_bytes // 8)
    return await stream_content(state, task.id, name, size, media_type, rate=task.download_rate)
