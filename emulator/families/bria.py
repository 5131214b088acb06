"""Bria on CometAPI: synchronous generate, edit by action, and the edit status query.

Documented: `POST /bria/text-to-image` answers `{"result": [{"urls", "seed", "uuid"}]}`
at once (https://apidoc.cometapi.com/api/image/bria/generate-image); `POST
/bria/image/edit/{action}` for six actions, `mask` required for erase, gen_fill and
expand, `prompt` for gen_fill and replace_background, `image` an https URL or a base64
data URI (https://apidoc.cometapi.com/it/api/image/bria/image-editing); `GET
/bria/{request_id}` (https://apidoc.cometapi.com/api/image/bria/query-status).
UNVERIFIED, emulated after Bria's own API: the edit answer's body (CometAPI's example
is `{}`; this answers Bria's `{request_id, status_url}`), the optional fields each
action takes, a failed edit's `error` object, and a refused generate (a 422 in
CometAPI's error envelope).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields
from emulator.families.cdn import cdn_url
from emulator.state import Task

router = APIRouter()

ASPECT_RATIOS = {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9"}
# The page lists these optional fields by description in this order, which is Bria's
# own text-to-image field list.
GENERATE_FIELDS = {"prompt", "num_results", "aspect_ratio", "seed", "negative_prompt", "steps_num",
                   "text_guidance_scale", "medium", "prompt_enhancement", "enhance_image",
                   "prompt_content_moderation", "ip_signal", "sync"}
# action -> required fields (CometAPI's page) and optional ones (Bria's pages: UNVERIFIED)
ACTIONS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "erase": (("image", "mask"), set()),
    "gen_fill": (("image", "mask", "prompt"), {"negative_prompt", "seed"}),
    "expand": (("image", "mask"), {"aspect_ratio", "prompt", "negative_prompt", "seed"}),
    "enhance": (("image",), {"seed"}),
    "increase_resolution": (("image",), set()),
    "replace_background": (("image", "prompt"), {"negative_prompt", "seed"}),
}
EDIT_FIELDS = {"image", "mask", "prompt", "num_results", "sync"}
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


def _image_bytes(value: Any, data_uri_only: bool) -> int | None | str:
    """An https URL (None), a base64 data URI (its size), or why it is neither."""
    text = str(value)
    if text.startswith("https://"):
        return None
    if text.startswith("data:image/") and ";base64," in text:
        text = text.split(";base64,", 1)[1]
    elif data_uri_only:
        return "must be an https URL or a base64 data URI"
    try:
        return len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return "is not valid base64"


@router.post("/bria/text-to-image")
async def generate(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, GENERATE_FIELDS, ("prompt",))
    if refused:
        return refused
    if "aspect_ratio" in body and body["aspect_ratio"] not in ASPECT_RATIOS:
        return error(400, f"aspect_ratio {body['aspect_ratio']} is not supported", code="invalid_request")
    count = body.get("num_results", 1)
    if not isinstance(count, int) or not 1 <= count <= 4:
        return error(400, "num_results must be from 1 to 4", code="invalid_request")
    task = state.new_task("bria", "bria-generate", str(body["prompt"]), "", seed=body.get("seed"))
    if task.job_seconds > 0:
        await asyncio.sleep(task.job_seconds)
    if task.fail:
        return error(422, "The prompt did not pass content moderation", code="content_moderation")
    base = str(request.base_url)
    return JSONResponse({"result": [
        {"urls": [cdn_url(base, task, f"generated-{n}.png")], "seed": body.get("seed") or 278741175 + n,
         "uuid": f"{task.id}_{n}"}
        for n in range(count)
    ]})


@router.post("/bria/image/edit/{action}")
async def edit(action: str, request: Request) -> Response:
    state = get_state(request)
    if action not in ACTIONS:
        return error(404, f"unknown edit action {action}; one of {', '.join(ACTIONS)}", code="not_found")
    required, optional = ACTIONS[action]
    body = await json_body(request)
    refused = refuse_fields(body, EDIT_FIELDS | optional, required)
    if refused:
        return refused
    sizes = {name: _image_bytes(body[name], data_uri_only=name == "image") for name in ("image", "mask")
             if name in body}
    for name, size in sizes.items():
        if isinstance(size, str):
            return error(400, f"{name} {size}", code="invalid_request")
    task = state.new_task("bria", "bria-edit", str(body.get("prompt") or action), "", operation=action,
                          seed=body.get("seed"), image_bytes=sizes.get("image"), mask_bytes=sizes.get("mask"))
    return JSONResponse({"request_id": task.id, "status_url": f"{request.base_url}bria/{task.id}"})


@router.get("/bria/{request_id}")
def status(request_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(request_id)
    if task is None or task.family != "bria" or task.model != "bria-edit":
        return error(404, f"request {request_id} not found", code="not_found")
    task.polled()
    state.stats.count("polls", task.model)
    return JSONResponse(status_object(task, str(request.base_url)))
