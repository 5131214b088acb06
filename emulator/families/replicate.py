"""Replicate through CometAPI: create a prediction for any `owner/name` with
`{"input": {...}}`, then poll `/replicate/v1/predictions/{id}` (CometAPI's
create-predictions-general and replicate-query pages: the create answer's fields, and
the query's status, output, error, metrics, started_at, completed_at). Output links
are delivery URLs on the emulator's `/cdn/`; the prediction's `urls` point at
api.replicate.com as the real ones do. UNVERIFIED: the create's 201 status (Replicate's
own; CometAPI shows the body only) and the failed prediction's `error` text.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields
from emulator.families.cdn import cdn_url
from emulator.state import Task

router = APIRouter()

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
STATUS = {"queued": "starting", "running": "processing", "succeeded": "succeeded", "failed": "failed"}


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


CREATED_KEYS = ("id", "model", "version", "input", "logs", "output", "error", "status", "created_at", "urls")


def prediction(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    status = task.odd_status if phase == "odd" else STATUS[phase]
    wall = time.time() - (time.monotonic() - task.created)
    api = f"https://api.replicate.com/v1/predictions/{task.id}"
    files = [f"out-{i}.{task.params['format']}" for i in range(task.params["outputs"])]
    bar = "#" * (progress // 10)
    logs = "" if phase == "queued" else f"Using seed: 1234\n{progress:3d}%|{bar:10s}| {progress // 2}/50"
    return {
        "id": task.id,
        "model": task.model,
        "version": "dp-4d0bcc010b3049749a251855f12800be",
        "input": task.params["input"],
        "logs": logs,
        "output": [cdn_url(base_url, task, f) for f in files] if phase == "succeeded" else None,
        "error": "NSFW content detected. Try running it again, or try a different prompt."
        if phase == "failed" else None,
        "status": status,
        "created_at": _iso(wall),
        "started_at": _iso(wall + task.job_seconds * 0.15) if phase != "queued" else None,
        "completed_at": _iso(wall + task.job_seconds) if phase in ("succeeded", "failed") else None,
        "urls": {"get": api, "cancel": f"{api}/cancel", "stream": f"https://stream.replicate.com/v1/files/{task.id}",
                 "web": f"https://replicate.com/p/{task.id}"},
        "metrics": {"image_count": len(files), "predict_time": task.job_seconds} if phase == "succeeded" else {},
    }


@router.post("/replicate/v1/models/{owner}/{name}/predictions")
async def create(owner: str, name: str, request: Request) -> Response:
    state = get_state(request)
    if not NAME.match(owner) or not NAME.match(name):
        return error(404, f"model {owner}/{name} not found", code="not_found")
    body = await json_body(request)
    refused = refuse_fields(body, {"input"}, ("input",))
    if refused:
        return refused
    inputs = body.get("input")
    if not isinstance(inputs, dict):
        return error(422, "input: field required and must be an object", code="invalid_request")
    outputs = inputs.get("num_outputs", 1)
    if not isinstance(outputs, int) or not 1 <= outputs <= 4:
        return error(422, "input.num_outputs must be from 1 to 4", code="invalid_request")
    task = state.new_task("replicate", f"{owner}/{name}", str(inputs.get("prompt") or ""), "",
                          input=inputs, outputs=outputs, format=str(inputs.get("output_format") or "webp"))
    created = prediction(task, str(request.base_url))
    return JSONResponse({key: created[key] for key in CREATED_KEYS}, status_code=201)


@router.get("/replicate/v1/predictions/{prediction_id}")
def get_prediction(prediction_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(prediction_id)
    if task is None or task.family != "replicate":
        return error(404, "prediction not found", code="not_found")
    task.polled()
    state.stats.count("polls", task.model)
    return JSONResponse(prediction(task, str(request.base_url)))
