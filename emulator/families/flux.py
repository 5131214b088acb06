"""Flux's `/flux/v1/...` contract: create per model, then `get_result?id=`.

Documented (CometAPI's Flux quickstart and flux-query pages): the create fields
prompt, width, height, seed, output_format and webhook_url, and the Ready answer
`{id, status, result: {seed, prompt, sample, duration, start_time, end_time}}`, with
Pending and "Task not found". UNVERIFIED, after Black Forest Labs' API, which CometAPI
relays: the other create fields, the create answer `{id, polling_url}`, the moderation
words and their `details`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields
from emulator.families.cdn import cdn_url
from emulator.state import Task

router = APIRouter()

MODELS = {"flux-dev", "flux-pro", "flux-pro-1.1", "flux-pro-1.1-ultra", "flux-kontext-pro", "flux-kontext-max"}
DOCUMENTED = {"prompt", "width", "height", "seed", "output_format", "webhook_url"}
BFL_FIELDS = {"steps", "guidance", "safety_tolerance", "prompt_upsampling", "aspect_ratio", "raw", "input_image",
              "image_prompt", "interval", "webhook_secret"}


def result_object(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    status = {"queued": "Pending", "running": "Pending", "succeeded": "Ready", "failed": "Content Moderated",
              "odd": task.odd_status}[phase]
    wall = time.time() - (time.monotonic() - task.created)
    out: dict[str, Any] = {"id": task.id, "status": status, "result": None}
    if phase == "succeeded":
        ext = "png" if task.params.get("output_format") == "png" else "jpeg"
        out["result"] = {
            "seed": task.params.get("seed", 1234), "prompt": task.prompt,
            "sample": cdn_url(base_url, task, f"sample.{ext}", "se=2026-01-01T00%3A10%3A00Z&sp=r&sig=emulated"),
            "duration": task.job_seconds, "start_time": wall, "end_time": wall + task.job_seconds,
        }
    elif phase == "failed":
        out["details"] = {"Moderation Reasons": ["Derivative Works Filter"]}
    return out


@router.post("/flux/v1/{model}")
async def create(model: str, request: Request) -> Response:
    state = get_state(request)
    if model not in MODELS:
        return error(404, f"model {model} not found", code="model_not_found")
    body = await json_body(request)
    refused = refuse_fields(body, DOCUMENTED | BFL_FIELDS, ("prompt",))
    if refused:
        return refused
    for name in ("width", "height"):
        if name in body and (not isinstance(body[name], int) or body[name] % 32):
            return error(422, f"{name} must be a multiple of 32", code="invalid_request")
    task = state.new_task("flux", model, str(body["prompt"]), "", output_format=body.get("output_format"),
                          seed=body.get("seed"))
    return JSONResponse({"id": task.id, "polling_url": f"{request.base_url}flux/v1/get_result?id={task.id}"})


@router.get("/flux/v1/get_result")
def get_result(request: Request, id: str = "") -> Response:  # noqa: A002 - the upstream's parameter name
    state = get_state(request)
    task = state.tasks.get(id)
    if task is None or task.family != "flux":
        return JSONResponse({"id": id, "status": "Task not found", "result": None})
    task.polled()
    state.stats.count("polls", task.model)
    return JSONResponse(result_object(task, str(request.base_url)))
