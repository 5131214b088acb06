"""Bria: the documented status query `GET /bria/{request_id}`, and create routes
modelled (UNVERIFIED, as in the adapter's catalogue) on Bria's v2 API under `/bria`."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state
from emulator.families.cdn import cdn_url
from emulator.state import Task

router = APIRouter()

OPERATIONS = {
    "remove_background": ("image",), "erase": ("image", "mask"), "gen_fill": ("image", "mask", "prompt"),
    "replace_background": ("image", "prompt"), "expand": ("image",), "increase_resolution": ("image",),
}
STATUS = {"queued": "IN_PROGRESS", "running": "IN_PROGRESS", "succeeded": "COMPLETED", "failed": "ERROR"}


def status_object(task: Task, base_url: str) -> dict[str, Any]:
    phase, _progress = task.phase()
    status = task.odd_status if phase == "odd" else STATUS[phase]
    out: dict[str, Any] = {"status": status, "request_id": task.id}
    if phase == "succeeded":
        out["result"] = {"seed": task.params.get("seed") or 1234567, "image_url": cdn_url(base_url, task, "result.png"),
                         "refined_prompt": task.prompt}
    elif phase == "failed":
        out["error"] = {"code": 422, "message": "The input did not pass content moderation",
                        "details": "NSFW content detected in the prompt"}
    return out


def _accepted(task: Task, base_url: str) -> JSONResponse:
    return JSONResponse({"request_id": task.id, "status_url": f"{base_url}bria/{task.id}"}, status_code=202)


@router.post("/bria/image/generate")
async def generate(request: Request) -> Response:
    state = get_state(request)
    body = await request.json()
    if not body.get("prompt"):
        return error(422, "prompt is required", code="invalid_request")
    if body.get("sync") is not False:
        return error(422, "this emulator only answers asynchronously: send sync=false", code="invalid_request")
    task = state.new_task("bria", "bria-generate", str(body["prompt"]), "", seed=body.get("seed"))
    return _accepted(task, str(request.base_url))


@router.post("/bria/image/edit/{operation}")
async def edit(operation: str, request: Request) -> Response:
    state = get_state(request)
    if operation not in OPERATIONS:
        return error(404, f"unknown edit operation {operation}", code="not_found")
    body = await request.json()
    missing = [name for name in OPERATIONS[operation] if not body.get(name)]
    if missing:
        return error(422, f"{', '.join(missing)} required for {operation}", code="invalid_request")
    if body.get("sync") is not False:
        return error(422, "this emulator only answers asynchronously: send sync=false", code="invalid_request")
    image = str(body["image"])
    try:
        inline = None if image.startswith(("https://", "http://")) else len(base64.b64decode(image, validate=True))
    except ValueError:
        return error(422, "image must be a URL or base64", code="invalid_request")
    task = state.new_task("bria", "bria-edit", str(body.get("prompt") or operation), "", operation=operation,
                          seed=body.get("seed"), image_bytes=inline)
    return _accepted(task, str(request.base_url))


@router.get("/bria/{request_id}")
def status(request_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(request_id)
    if task is None or task.family != "bria":
        return error(404, f"request {request_id} not found", code="not_found")
    task.polled()
    state.stats.count("polls", task.model)
    return JSONResponse(status_object(task, str(request.base_url)))
