"""MiniMax (Hailuo) video: create, query, file retrieve and file content.

UNVERIFIED as a whole: CometAPI's MiniMax pages were NOT FOUND; this follows
MiniMax's own API as other relays expose it under `/minimax/v1/...`: every answer carries `base_resp`
(`status_code` 0 or an error code with `status_msg`), the query reports
Preparing / Queueing / Processing / Success / Fail and a `file_id`, and the file
is fetched by id (JSON with a `download_url`, or the bytes themselves).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields, stream_content
from emulator.state import State, Task

router = APIRouter()

# model -> (durations, resolutions, longest clip per resolution)
MODELS: dict[str, tuple[set[int], set[str], dict[str, int]]] = {
    "MiniMax-Hailuo-02": ({6, 10}, {"512P", "768P", "1080P"}, {"1080P": 6}),
    "T2V-01-Director": ({6}, {"720P"}, {}),
    "I2V-01-Director": ({6}, {"720P"}, {}),
}
STATUS = {"queued": "Queueing", "running": "Processing", "succeeded": "Success", "failed": "Fail"}
OK = {"status_code": 0, "status_msg": "success"}


def refusal(code: int, message: str) -> JSONResponse:
    return JSONResponse({"task_id": "", "base_resp": {"status_code": code, "status_msg": message}})


def file_id(task: Task) -> str:
    return str(int(hashlib.sha1(task.id.encode()).hexdigest()[:12], 16))


def _task_for_file(state: State, wanted: str) -> Task | None:
    for task in list(state.tasks.values()):
        if task.family == "minimax" and file_id(task) == wanted and task.phase()[0] == "succeeded":
            return task
    return None


@router.post("/minimax/v1/video_generation")
async def create(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, {"model", "prompt", "duration", "resolution", "prompt_optimizer",
                                   "first_frame_image", "callback_url"}, ("model",))
    if refused:
        return refused
    model = str(body.get("model") or "")
    if model not in MODELS:
        return refusal(2013, f"invalid params: unknown model {model}")
    durations, resolutions, longest = MODELS[model]
    prompt = str(body.get("prompt") or "")
    if not prompt and not body.get("first_frame_image"):
        return refusal(2013, "invalid params: prompt is required")
    duration = int(body.get("duration", 6))
    resolution = str(body.get("resolution", sorted(resolutions)[0]))
    if duration not in durations or resolution not in resolutions:
        return refusal(2013, f"invalid params: duration {duration} / resolution {resolution} not supported by {model}")
    if duration > longest.get(resolution, duration):
        return refusal(2013, f"invalid params: {resolution} supports at most {longest[resolution]} seconds")
    if "[refuse]" in prompt.lower():
        return refusal(1026, "input new_sensitive: the prompt contains sensitive content")
    task = state.new_task(
        "minimax", model, prompt, "", duration=duration, resolution=resolution,
        prompt_optimizer=body.get("prompt_optimizer"),
        first_frame=str(body.get("first_frame_image", ""))[:40] or None,
    )
    task.params["task_id"] = str(int(task.id[:15], 16))
    return JSONResponse({"task_id": task.params["task_id"], "base_resp": OK})


def _by_task_id(state: State, task_id: str) -> Task | None:
    for task in list(state.tasks.values()):
        if task.family == "minimax" and task.params.get("task_id") == task_id:
            return task
    return None


@router.get("/minimax/v1/query/video_generation")
def query(request: Request, task_id: str = "") -> Response:
    state = get_state(request)
    task = _by_task_id(state, task_id)
    if task is None:
        return JSONResponse({"task_id": task_id, "status": "", "base_resp": {"status_code": 2013,
                             "status_msg": f"invalid params: task {task_id} not found"}})
    task.polled()
    state.stats.count("polls", task.model)
    phase, _progress = task.phase()
    out: dict[str, Any] = {"task_id": task_id, "status": task.odd_status if phase == "odd" else STATUS[phase],
                           "file_id": "", "base_resp": OK}
    if phase == "queued" and time.monotonic() - task.created < task.job_seconds * 0.05:
        out["status"] = "Preparing"
    if phase == "succeeded":
        width, height = {"1080P": (1920, 1080), "768P": (1366, 768)}.get(task.params["resolution"], (1280, 720))
        out.update(file_id=file_id(task), video_width=width, video_height=height)
    elif phase == "failed":
        out["base_resp"] = {"status_code": 1027, "status_msg": "output video new_sensitive: the video may contain "
                            "sensitive content"}
    return JSONResponse(out)


@router.get("/minimax/v1/files/retrieve")
def retrieve(request: Request, file_id: str = "") -> Response:
    task = _task_for_file(get_state(request), file_id)
    if task is None:
        return JSONResponse({"base_resp": {"status_code": 1004, "status_msg": f"file {file_id} not found"}})
    url = f"{str(request.base_url).rstrip('/')}/minimax/v1/files/retrieve_content?file_id={file_id}"
    return JSONResponse({"file": {"file_id": file_id, "bytes": task.content_bytes, "created_at": int(time.time()),
                                  "filename": "output.mp4", "purpose": "video_generation", "download_url": url},
                         "base_resp": OK})


@router.get("/minimax/v1/files/retrieve_content")
async def retrieve_content(request: Request, file_id: str = "") -> Response:
    state = get_state(request)
    task = _task_for_file(state, file_id)
    if task is None:
        return error(404, f"file {file_id} not found", code="not_found")
    state.stats.count("downloads", task.model)
    return await stream_content(state, task.id, "video", task.content_bytes, "video/mp4", rate=task.download_rate)
