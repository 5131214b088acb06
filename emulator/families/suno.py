"""Suno's `/suno/...` contract: submit music or lyrics, fetch one task, batch fetch.

The documented parts are followed literally (the submit body's fields per mode, batch
`{ids, action}`, task fields). A generated clip is continued with its task's
`task_id` next to `continue_clip_id`; `task: "upload_extend"` continues an uploaded
clip, and a `continue_clip_id` with neither is refused, as gateways of the same
envelopes do. UNVERIFIED, the same guesses the adapter's catalogue makes: the submit
answer (`{code, data: task id, message}`, third-party docs of the same gateway
family), the status words beyond IN_PROGRESS, the clip fields, the lyrics route's
body and answer; and this emulator's own inference that `upload_extend` on a clip
that Suno generated is refused. Two clips per song, as Suno makes. The batch fetch
honours `action`, so a client that mixes music and lyrics ids in one call misses tasks.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields
from emulator.families.cdn import cdn_url
from emulator.state import State, Task

router = APIRouter()

MODELS = {"chirp-v3-5": "suno-v3.5", "chirp-v4": "suno-v4", "chirp-auk": "suno-v4.5"}
STATUS = {"queued": "SUBMITTED", "running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILURE"}
CLIPS_PER_SONG = 2
# The fields CometAPI's Suno pages send to /suno/submit/music (the modes, continuation,
# and the stems example's); notify_hook is third-party docs' callback field.
MUSIC_FIELDS = frozenset({
    "mv", "prompt", "tags", "title", "gpt_description_prompt", "make_instrumental", "continue_clip_id",
    "continue_at", "task", "task_id", "generation_type", "continued_aligned_prompt", "stem_type_id",
    "stem_type_group_name", "stem_task", "notify_hook",
})


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


def _generated_by(state: State, wanted: str) -> Task | None:
    """The song task that generated clip `wanted`, if any did."""
    for task in list(state.tasks.values()):
        if task.family == "suno" and task.params["action"] == "MUSIC" and wanted in {
            clip_id(task, n) for n in range(1, CLIPS_PER_SONG + 1)
        }:
            return task
    return None


def _continuation_refused(state: State, body: dict[str, Any]) -> Response | None:
    clip = str(body["continue_clip_id"])
    if not isinstance(body.get("continue_at"), int | float) or body["continue_at"] <= 0:
        return error(400, "continue_at must be a positive number of seconds", code="invalid_request")
    owner = _generated_by(state, clip)
    if body.get("task_id"):
        task = _find(state, str(body["task_id"]))
        if task is None or owner is None or owner.id != task.id:
            return error(400, f"clip {clip} is not a clip of task {body['task_id']}", code="invalid_request")
        if body.get("task") == "upload_extend":
            return error(400, "upload_extend continues an uploaded clip; this one was generated", code="invalid_request")
        if task.phase()[0] != "succeeded":
            return error(400, f"task {task.id} has not finished", code="invalid_request")
        return None
    if body.get("task") != "upload_extend":
        return error(400, "task_id is required to continue a generated clip (or task: upload_extend for an "
                     "uploaded one)", code="invalid_request")
    if owner is not None:  # the emulator's inference, see the module's docstring
        return error(400, f"clip {clip} was generated by task {owner.id}: continue it with that task_id",
                     code="invalid_request")
    return None


def _accepted(task: Task) -> JSONResponse:
    return JSONResponse({"code": "success", "data": task.id, "message": ""})


@router.post("/suno/submit/music")
async def submit_music(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, MUSIC_FIELDS)
    if refused:
        return refused
    mv = str(body.get("mv") or "chirp-v4")
    if mv not in MODELS:
        return error(400, f"mv {mv} is not supported", code="invalid_request")
    if not body.get("continue_clip_id") and (body.get("task_id") or body.get("continue_at") is not None
                                             or body.get("task") == "upload_extend"):
        return error(400, "continue_clip_id is required to continue a clip", code="invalid_request")
    if body.get("continue_clip_id"):
        refused = _continuation_refused(state, body)
        if refused:
            return refused
        text = str(body.get("prompt") or "continuation")
    elif body.get("gpt_description_prompt"):
        text = str(body["gpt_description_prompt"])
    elif body.get("tags") and body.get("title") and (body.get("prompt") or body.get("make_instrumental")):
        text = str(body.get("prompt") or body["title"])
    else:
        return error(400, "give gpt_description_prompt, or prompt with tags and title", code="invalid_request")
    task = state.new_task("suno", MODELS[mv], text, "", action="MUSIC", mv=mv, title=body.get("title"),
                          tags=body.get("tags"), continue_clip_id=body.get("continue_clip_id"),
                          continue_at=body.get("continue_at"), task=body.get("task"), task_id=body.get("task_id"))
    return _accepted(task)


@router.post("/suno/submit/lyrics")
async def submit_lyrics(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, {"prompt", "notify_hook"}, ("prompt",))
    if refused:
        return refused
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
    body = await json_body(request)
    refused = refuse_fields(body, {"ids", "action"}, ("ids",))
    if refused:
        return refused
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
