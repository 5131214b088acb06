"""Midjourney's `/mj/...` contract: imagine, action, fetch, batch fetch, and the
`/mj/image/{id}` proxy links results point at.

Bodies and answers follow CometAPI's pages (imagine, action, fetch-single-task,
list-by-condition): the fetch answer has the page's schema fields (less `maskBase64`,
which only mask tasks carry). Buttons carry custom ids derived from the task id, so a
client that hard-codes one fails exactly as it would against the real service.
UNVERIFIED, after the midjourney-proxy convention CometAPI's MJ API is built on: the
submit refusal codes other than 1 (3, 4, 21, 22, 23, 24), and `null` for an unknown id.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import get_state, json_body, refuse_fields, stream_content
from emulator.state import State, Task

router = APIRouter()

BOT_TYPES = {"MID_JOURNEY", "NIJI_JOURNEY"}
STATUS = {"queued": "SUBMITTED", "running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILURE"}
GRID_ACTIONS = {"IMAGINE", "VARIATION", "REROLL", "ZOOM", "PAN"}
# The imagine page lists prompt, botType and accountFilter; base64Array, notifyHook and
# state are the same proxy's fields that the action page's `state` echo implies.
IMAGINE_FIELDS = frozenset({"prompt", "botType", "accountFilter", "base64Array", "notifyHook", "state"})
ACTION_FIELDS = frozenset({"customId", "taskId", "state", "enableRemix", "chooseSameChannel", "notifyHook"})
PROPERTIES = {"discordChannelId": "5e6ca8e1f40e4de6", "discordInstanceId": "5e6ca8e1f40e4de6"}


def _hash(task: Task) -> str:
    return hashlib.sha1(task.id.encode()).hexdigest()[:12]


def buttons_for(task: Task) -> list[dict[str, Any]]:
    h = _hash(task)

    def button(custom: str, label: str = "", emoji: str = "") -> dict[str, Any]:
        return {"customId": custom, "emoji": emoji, "label": label, "type": 2, "style": 2}

    if task.params["action"] in GRID_ACTIONS:
        return [
            *(button(f"MJ::JOB::upsample::{i}::{h}", f"U{i}") for i in range(1, 5)),
            button(f"MJ::JOB::reroll::0::{h}::SOLO", emoji="🔄"),
            *(button(f"MJ::JOB::variation::{i}::{h}", f"V{i}") for i in range(1, 5)),
        ]
    return [
        button(f"MJ::JOB::upsample_v6_2x_subtle::1::{h}::SOLO", "Upscale (Subtle)"),
        button(f"MJ::JOB::upsample_v6_2x_creative::1::{h}::SOLO", "Upscale (Creative)"),
        button(f"MJ::JOB::low_variation::1::{h}::SOLO", "Vary (Subtle)"),
        button(f"MJ::JOB::high_variation::1::{h}::SOLO", "Vary (Strong)"),
        button(f"MJ::Inpaint::1::{h}::SOLO", "Vary (Region)"),
        button(f"MJ::Outpaint::50::1::{h}::SOLO", "Zoom Out 2x"),
        button(f"MJ::Outpaint::75::1::{h}::SOLO", "Zoom Out 1.5x"),
        button(f"MJ::CustomZoom::{h}", "Custom Zoom"),
        button(f"MJ::JOB::pan_left::1::{h}::SOLO", emoji="⬅️"),
        button(f"MJ::JOB::pan_right::1::{h}::SOLO", emoji="➡️"),
    ]


def action_of(custom_id: str) -> tuple[str, bool]:
    """(MJ action word, whether the button opens a modal form)."""
    if custom_id.startswith(("MJ::Inpaint", "MJ::CustomZoom")):
        return ("VARIATION" if "Inpaint" in custom_id else "ZOOM"), True
    if "::upsample" in custom_id:
        return "UPSCALE", False
    if "variation" in custom_id:
        return "VARIATION", False
    if "::reroll::" in custom_id:
        return "REROLL", False
    if custom_id.startswith("MJ::Outpaint"):
        return "ZOOM", False
    if "::pan_" in custom_id:
        return "PAN", False
    return "UNKNOWN", False


def task_object(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    status = task.odd_status if phase == "odd" else STATUS[phase]
    if phase == "succeeded" and task.params.get("modal"):
        status = "MODAL"
    wall = time.time() - (time.monotonic() - task.created)
    started = phase != "queued"
    finished = phase in ("succeeded", "failed")
    done = status == "SUCCESS"
    return {
        "id": task.id,
        "action": task.params["action"],
        "customId": task.params.get("custom_id", ""),
        "botType": task.params["bot_type"],
        "prompt": task.prompt,
        "promptEn": task.prompt,
        "description": "Submit success",
        "state": task.params.get("state", ""),
        "submitTime": int(wall * 1000),
        "startTime": int((wall + task.job_seconds * 0.15) * 1000) if started else 0,
        "finishTime": int((wall + task.job_seconds) * 1000) if finished else 0,
        "imageUrl": f"{base_url}mj/image/{task.id}" if done else "",
        "videoUrl": "",
        "status": status,
        "progress": f"{progress}%",
        "failReason": "Banned prompt detected: the prompt may violate the community guidelines"
        if status == "FAILURE" else "",
        "buttons": buttons_for(task) if done else [],
        "properties": {"finalPrompt": task.prompt, **PROPERTIES},
    }


def _submitted(task: Task) -> JSONResponse:
    return JSONResponse({"code": 1, "description": "Submission successful", "result": task.id,
                         "properties": dict(PROPERTIES)})


def _refused(code: int, description: str) -> JSONResponse:
    return JSONResponse({"code": code, "description": description, "result": None, "properties": dict(PROPERTIES)})


@router.post("/mj/submit/imagine")
async def imagine(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, IMAGINE_FIELDS, ("prompt",))
    if refused:
        return refused
    prompt = str(body.get("prompt") or "").strip()
    bot_type = body.get("botType") or "MID_JOURNEY"
    if not prompt:
        return _refused(4, "prompt is required")
    if bot_type not in BOT_TYPES:
        return _refused(4, f"botType must be one of {', '.join(sorted(BOT_TYPES))}")
    model = "niji-journey" if bot_type == "NIJI_JOURNEY" else "midjourney"
    return _submitted(state.new_task("midjourney", model, prompt, "", action="IMAGINE", bot_type=bot_type,
                                     state=str(body.get("state") or "")))


@router.post("/mj/submit/action")
async def action(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, ACTION_FIELDS, ("customId", "taskId"))
    if refused:
        return refused
    parent = state.tasks.get(str(body.get("taskId") or ""))
    if parent is None or parent.family != "midjourney":
        return _refused(3, "the task does not exist or has expired")
    if task_object(parent, "")["status"] != "SUCCESS":
        return _refused(4, "the task is not finished")
    custom_id = str(body.get("customId") or "")
    if custom_id not in {b["customId"] for b in buttons_for(parent)}:
        return _refused(4, "customId is not one of the task's buttons")
    word, modal = action_of(custom_id)
    task = state.new_task("midjourney", parent.model, parent.prompt, "", action=word,
                          bot_type=parent.params["bot_type"],
                          custom_id=custom_id, parent=parent.id, modal=modal, state=str(body.get("state") or ""))
    if modal:
        return JSONResponse({"code": 21, "description": "Waiting for window confirm", "result": task.id,
                             "properties": dict(PROPERTIES)})
    return _submitted(task)


def _find(state: State, task_id: str) -> Task | None:
    task = state.tasks.get(task_id)
    return task if task is not None and task.family == "midjourney" else None


@router.get("/mj/task/{task_id}/fetch")
def fetch(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = _find(state, task_id)
    if task is None:
        return JSONResponse(None)  # the proxy answers null for an unknown id
    task.polled()
    state.stats.count("polls", task.model)
    return JSONResponse(task_object(task, str(request.base_url)))


@router.post("/mj/task/list-by-condition")
async def list_by_condition(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, {"ids"}, ("ids",))
    if refused:
        return refused
    state.stats.batch(len(body.get("ids") or []))
    out = []
    for task_id in body.get("ids") or []:
        task = _find(state, str(task_id))
        if task is None:
            continue
        task.polled()
        state.stats.count("polls", task.model)
        state.stats.count("batch_polls", task.model)
        out.append(task_object(task, str(request.base_url)))
    return JSONResponse(out)


@router.get("/mj/image/{task_id}")
async def image(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = _find(state, task_id)
    if task is None or task_object(task, "")["status"] != "SUCCESS":
        return JSONResponse({"error": "not found"}, status_code=404)
    state.stats.count("downloads", task.model)
    return await stream_content(state, task.id, "image", task.content_bytes, "image/png", rate=task.download_rate)
