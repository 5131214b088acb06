"""Suno's `/suno/...` contract: submit music or lyrics, fetch one task, batch fetch.

The documented parts are followed literally (task id in `data`, batch `{ids, action}`,
task fields). The status words beyond IN_PROGRESS and the clip fields are the same
UNVERIFIED guesses the adapter's catalogue makes; two clips per song, as Suno makes.
The batch fetch honours `action`, so a client that mixes music and lyrics ids in one
call misses tasks.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state
from emulator.families.cdn import cdn_url
from emulator.state import State, Task

router = APIRouter()

MODELS = {"chirp-v3-5": "suno-v3.5", "chirp-v4": "suno-v4", "chirp-auk": "suno-v4.5"}
STATUS = {"queued": "SUBMITTED", "running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILURE"}
CLIPS_PER_SONG = 2


def clip_id(task: Task, number: int) -> str:
    digest = hashlib.sha1(f"{task.id}:{number}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _clip(task: Task, number: int, phase: str, base_url: str) -> dict[str, Any]:
    done = phase == "succeeded"
    return {
        "id": clip_id(task, number),
        "title": task.params.get("title") or "Lighthouse at Dawn",
        "status": "complete" if done else "streaming",
        "audio_url": cdn_url(base_url, task, f"clip-{number}.mp3") if done else "",
        "image_url": cdn_url(base_url, task, f"cover-{number}.jpeg") if done else "",
        "video_url": "",
        "model_name": task.params["mv"],
        "metadata": {"tags": task.params.get("tags", ""), "prompt": task.prompt, "duration": 121.4 if done else None,
                     "type": "gen"},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }


def task_object(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    status = task.odd_status if phase == "odd" else STATUS[phase]
    wall = time.time() - (time.monotonic() - task.created)
    data: Any = []
    if task.params["action"] == "LYRICS":
        if phase == "succeeded":
            data = {"id": clip_id(task, 1), "title": "The Keeper's Cat", "status": "complete",
                    "text": f"[Verse]\n{task.prompt}\nThe lamp goes round and round\n\n[Chorus]\nHome, home"}
    elif phase in ("running", "odd", "succeeded"):
        data = [_clip(task, n, phase, base_url) for n in range(1, CLIPS_PER_SONG + 1)]
    return {
        "task_id": task.id,
        "notify_hook": "",
        "action": task.params["action"],
        "status": status,
        "fail_reason": "The prompt names an artist; Suno does not imitate artists" if phase == "failed" else "",
        "submit_time": int(wall),
        "start_time": int(wall + task.job_seconds * 0.15) if phase != "queued" else 0,
        "finish_time": int(wall + task.job_seconds) if phase in ("succeeded", "failed") else 0,
        "progress": f"{progress}%",
        "data": data,
    }


def _clip_exists(state: State, wanted: str) -> bool:
    return any(
        t.family == "suno" and t.params["action"] == "MUSIC" and t.phase()[0] == "succeeded"
        and wanted in {clip_id(t, n) for n in range(1, CLIPS_PER_SONG + 1)}
        for t in list(state.tasks.values())
    )


def _accepted(task: Task) -> JSONResponse:
    return JSONResponse({"code": "success", "data": task.id, "message": ""})


@router.post("/suno/submit/music")
async def submit_music(request: Request) -> Response:
    state = get_state(request)
    body = await request.json()
    mv = str(body.get("mv") or "chirp-v4")
    if mv not in MODELS:
        return error(400, f"mv {mv} is not supported", code="invalid_request")
    if body.get("continue_clip_id"):
        if not _clip_exists(state, str(body["continue_clip_id"])):
            return error(400, "continue_clip_id is not a finished clip", code="invalid_request")
        if not isinstance(body.get("continue_at"), int | float) or body["continue_at"] <= 0:
            return error(400, "continue_at must be a positive number of seconds", code="invalid_request")
        if body.get("task") not in ("extend", "upload_extend"):
            return error(400, "task must be extend or upload_extend for a continuation", code="invalid_request")
        text = str(body.get("prompt") or "continuation")
    elif body.get("gpt_description_prompt"):
        text = str(body["gpt_description_prompt"])
    elif body.get("tags") and body.get("title") and (body.get("prompt") or body.get("make_instrumental")):
        text = str(body.get("prompt") or body["title"])
    else:
        return error(400, "give gpt_description_prompt, or prompt with tags and title", code="invalid_request")
    task = state.new_task("suno", MODELS[mv], text, "", action="MUSIC", mv=mv, title=body.get("title"),
                          tags=body.get("tags"), continue_clip_id=body.get("continue_clip_id"),
                          continue_at=body.get("continue_at"), task=body.get("task"))
    return _accepted(task)


@router.post("/suno/submit/lyrics")
async def submit_lyrics(request: Request) -> Response:
    state = get_state(request)
    body = await request.json()
    if not body.get("prompt"):
        return error(400, "prompt is required", code="invalid_request")
    return _accepted(state.new_task("suno", "suno-lyrics", str(body["prompt"]), "", action="LYRICS", mv="lyrics"))


def _find(state: State, task_id: str) -> Task | None:
    task = state.tasks.get(task_id)
    return task if task is not None and task.family == "suno" else None


@router.get("/suno/fetch/{task_id}")
def fetch(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = _find(state, task_id)
    if task is None:
        return error(404, "task_not_exist", code="task_not_exist")
    task.polled()
    state.stats.count("polls", task.model)
    return JSONResponse({"code": "success", "message": "", "data": task_object(task, str(request.base_url))})


@router.post("/suno/fetch")
async def batch_fetch(request: Request) -> Response:
    state = get_state(request)
    body = await request.json()
    action = body.get("action")
    state.stats.batch(len(body.get("ids") or []))
    out = []
    for task_id in body.get("ids") or []:
        task = _find(state, str(task_id))
        if task is None or (action and task.params["action"] != action):
            continue
        task.polled()
        state.stats.count("polls", task.model)
        state.stats.count("batch_polls", task.model)
        out.append(task_object(task, str(request.base_url)))
    return JSONResponse({"code": "success", "message": "", "data": out})
