"""Kling's `/kling/v1/...` contract: text to video, image to video, image
generation and Omni video, each with its query.

Each create takes exactly the fields its CometAPI page lists (image to video: no
aspect_ratio, no camera_control; image generation: seven ratios, no 21:9, `n` 1-9;
JPG/JPEG/PNG images, a URL or bare base64) and answers in the shape its page shows
(the pages differ: text to video has a `request_id`, image to video a `task_info`,
image generation a fuller `data`). Queries use Kling's envelope (`code` 0,
`data.task_id`, `data.task_status`, millisecond times); the Omni query answers in the
other documented shape, CometAPI's task wrapper (`data.status` SUCCESS...,
`data.progress` "58%", Kling's payload under `data.data`), so both are exercised.
UNVERIFIED: the Omni create answer (the page's example is `{}`; this answers text to
video's shape) and the key of an `image_list` entry's image (`image_url`). Kling's own
refusal envelope (`code` 1201 ...) answers values out of range; fields the page does
not list get CometAPI's 400 envelope. Results are served from this host.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields, stream_content
from emulator.state import Task

router = APIRouter()

RATIOS = {"16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"}
COMMON = {"prompt", "callback_url", "model_name", "external_task_id"}


@dataclass(frozen=True)
class Action:
    kind: str
    fields: frozenset[str]
    required: tuple[str, ...]
    prompt_max: int = 500
    ratios: frozenset[str] = frozenset()


ACTIONS = {
    "videos/text2video": Action("videos", frozenset(COMMON | {
        "negative_prompt", "aspect_ratio", "cfg_scale", "mode", "duration", "camera_control"}), ("prompt",),
        ratios=frozenset(RATIOS)),
    "videos/image2video": Action("videos", frozenset(COMMON | {
        "image", "negative_prompt", "mode", "image_tail", "cfg_scale", "duration", "static_mask",
        "dynamic_masks"}), ("image",)),
    "images/generations": Action("images", frozenset(COMMON - {"external_task_id"} | {
        "negative_prompt", "image", "image_fidelity", "n", "aspect_ratio"}), ("prompt",), ratios=frozenset(RATIOS)),
    "videos/omni-video": Action("videos", frozenset(COMMON | {
        "image_list", "element_list", "video_list", "mode", "aspect_ratio", "duration"}), ("prompt",),
        prompt_max=2500, ratios=frozenset({"16:9", "9:16", "1:1"})),
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


def _not_jpg_or_png(image: Any) -> bool:
    """A URL with another image type's suffix, or base64 whose bytes are not JPEG or PNG."""
    text = str(image)
    if text.startswith(("https://", "http://")):
        return text.split("?", 1)[0].lower().endswith((".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif"))
    try:
        head = base64.b64decode(text[:64] + "=" * (-len(text[:64]) % 4), validate=True)
    except (binascii.Error, ValueError):
        return True
    return not head.startswith((b"\x89PNG", b"\xff\xd8\xff"))


def _refusal(body: dict[str, Any], action: Action) -> str | None:
    prompt = str(body.get("prompt") or "")
    if len(prompt) > action.prompt_max:
        return f"prompt must be at most {action.prompt_max} characters"
    if len(str(body.get("negative_prompt") or "")) > 200:
        return "negative_prompt must be at most 200 characters"
    if "aspect_ratio" in body and body["aspect_ratio"] not in action.ratios:
        return f"invalid aspect_ratio {body['aspect_ratio']}"
    if str(body.get("duration", "5")) not in {"5", "10"}:
        return f"invalid duration {body.get('duration')}"
    if body.get("mode", "std") not in {"std", "pro"}:
        return f"invalid mode {body.get('mode')}"
    cfg = body.get("cfg_scale", 0.5)
    if not isinstance(cfg, int | float) or not 0 <= cfg <= 1:
        return "cfg_scale must be between 0 and 1"
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 9:
        return "n must be from 1 to 9"
    entries = body.get("image_list") or []
    if not isinstance(entries, list) or any(
        not isinstance(e, dict) or not set(e) <= {"image_url", "type"} or e.get("type", "first_frame")
        not in ("first_frame", "end_frame") for e in entries
    ):
        return "image_list entries are {image_url, type?} with type first_frame or end_frame"
    images = [body[k] for k in ("image", "image_tail") if body.get(k)] + [e.get("image_url") for e in entries]
    if any(_not_jpg_or_png(image) for image in images):
        return "images must be JPG/JPEG or PNG"
    return None


def _answer(action: str, task: Task) -> dict[str, Any]:
    """The create answer as the action's page shows it."""
    if action == "videos/image2video":
        data = {"task_id": task.id, "task_status": "submitted", "task_info": {}, "created_at": _ms(task),
                "updated_at": _ms(task)}
        return {"code": 0, "message": "success", "data": data}
    if action == "images/generations":
        data = {"created_at": _ms(task), "task_id": task.id, "task_info": {"external_task_id": None},
                "task_result": None, "task_status": "submitted", "task_status_msg": None, "updated_at": _ms(task)}
        return {"code": 0, "data": data, "message": "SUCCEED"}
    data = {"task_id": task.id, "task_status": "submitted", "created_at": _ms(task), "updated_at": _ms(task)}
    return {"code": 0, "message": "SUCCEED", "request_id": uuid.uuid4().hex, "data": data}


async def _create(request: Request, name: str) -> Response:
    state = get_state(request)
    action = ACTIONS[name]
    body = await json_body(request)
    refused = refuse_fields(body, action.fields, action.required)
    if refused:
        return refused
    problem = _refusal(body, action)
    if problem:
        return kling_error(problem)
    images = [body[k] for k in ("image", "image_tail") if body.get(k)] + [
        i.get("image_url") for i in body.get("image_list", [])]
    task = state.new_task(
        "kling", str(body.get("model_name") or "kling-v1"), str(body.get("prompt") or "(image only)"), "",
        action=name, kind=action.kind, n=int(body.get("n", 1)), duration=str(body.get("duration", "5")),
        mode=body.get("mode", "std"), aspect_ratio=body.get("aspect_ratio"), camera_control=body.get("camera_control"),
        images=[i if str(i).startswith("http") else f"base64:{len(str(i))}" for i in images],
        image_list=body.get("image_list"),
    )
    return JSONResponse(_answer(name, task))


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
