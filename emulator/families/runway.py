"""Runway's `/runwayml/v1/...` contract: image to video, video to video, upscale,
and the task query.

The create bodies are CometAPI's official-format pages' (runway-images-raw-video,
generate-a-video-from-a-video, upscale-a-video): the `X-Runway-Version` header is
required, `promptImage` and `references[].uri` must be https URLs, `videoUri` an https
URL or a base64 data URI, and prompt and seed limits differ per task. The answer is
`{id}`. CometAPI documents two answers for the same query, Runway's own task and its
`{code, data: {..., data: <task>}}` wrapper; the emulator alternates between them
poll by poll, and the first poll of a task answers `task_not_exist`, as a task just
created may upstream. UNVERIFIED (Runway's own API, not CometAPI's pages): that
video_to_video requires promptText, and gen4_aleph's ratios.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields, stream_content
from emulator.state import Task

router = APIRouter()


@dataclass(frozen=True)
class Endpoint:
    action: str
    models: set[str]
    fields: set[str]
    required: tuple[str, ...]
    ratios: set[str] = field(default_factory=set)
    prompt_max: int = 0
    seed_max: int = 0


TASKS: dict[str, Endpoint] = {
    "image_to_video": Endpoint(
        "IMAGE_TO_VIDEO", {"gen4_turbo", "gen3a_turbo"},
        {"promptImage", "model", "seed", "promptText", "watermark", "duration", "ratio"}, ("promptImage", "model"),
        {"1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672", "1280:768", "768:1280"},
        prompt_max=512, seed_max=999_999_999),
    "video_to_video": Endpoint(
        "VIDEO_TO_VIDEO", {"gen4_aleph"},
        {"videoUri", "promptText", "seed", "model", "references", "ratio", "contentModeration"},
        ("videoUri", "model", "promptText"),
        {"1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672", "848:480", "640:480"},
        prompt_max=1000, seed_max=4_294_967_295),
    "video_upscale": Endpoint("VIDEO_UPSCALE", {"upscale_v1"}, {"videoUri", "model"}, ("videoUri", "model")),
}
RAW = {"queued": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED"}
WRAPPED = {"queued": "QUEUED", "running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILURE"}
FAILURE = ("SAFETY.INPUT.TEXT", "The prompt did not pass Runway's content moderation")
FILES = "/_emulator/files/runway"


def _created(task: Task) -> float:
    return time.time() - (time.monotonic() - task.created)


def raw_task(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    out: dict[str, Any] = {
        "id": task.id, "status": task.odd_status if phase == "odd" else RAW[phase],
        "createdAt": datetime.fromtimestamp(_created(task), UTC).isoformat().replace("+00:00", "Z"),
    }
    if phase in ("running", "odd"):
        out["progress"] = round(progress / 100, 2)
    if phase == "succeeded":
        out["output"] = [f"{base_url.rstrip('/')}{FILES}/{task.id}.mp4"]
    elif phase == "failed":
        out["failureCode"], out["failure"] = FAILURE
    return out


def wrapped_task(task: Task, base_url: str) -> dict[str, Any]:
    phase, progress = task.phase()
    created = int(_created(task))
    done = phase in ("succeeded", "failed")
    return {"code": "success", "message": "", "data": {
        "task_id": task.id, "action": task.params["action"],
        "status": task.odd_status if phase == "odd" else WRAPPED[phase],
        "fail_reason": FAILURE[1] if phase == "failed" else "",
        "submit_time": created, "start_time": created, "finish_time": created + int(task.job_seconds) if done else 0,
        "progress": f"{progress}%", "data": raw_task(task, base_url),
    }}


def _invalid(endpoint: Endpoint, body: dict[str, Any]) -> str | None:
    """Why the body breaks the documented rules, if it does."""
    if body["model"] not in endpoint.models:
        return f"model {body['model']!r} is not available here; one of {', '.join(sorted(endpoint.models))}"
    if endpoint.ratios and "ratio" in body and body["ratio"] not in endpoint.ratios:
        return f"invalid ratio {body['ratio']}"
    if "duration" in body and body["duration"] not in (5, 10):
        return f"invalid duration {body['duration']}: 5 or 10"
    if endpoint.prompt_max and len(str(body.get("promptText") or "")) > endpoint.prompt_max:
        return f"promptText must be at most {endpoint.prompt_max} characters"
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= endpoint.seed_max):
        return f"seed must be from 0 to {endpoint.seed_max}"
    if "promptImage" in body and not str(body["promptImage"]).startswith("https://"):
        return "promptImage must be an https URL"
    video = str(body.get("videoUri", "https://"))
    if not video.startswith(("https://", "data:video/")):
        return "videoUri must be an https URL or a base64 data URI"
    for ref in body.get("references") or []:
        if not isinstance(ref, dict) or set(ref) != {"type", "uri"} or not str(ref["uri"]).startswith("https://"):
            return "references must be {type, uri} objects with https URIs"
    return None


@router.post("/runwayml/v1/{kind}")
async def create(kind: str, request: Request) -> Response:
    state = get_state(request)
    if kind not in TASKS:
        return error(404, f"unknown Runway endpoint {kind}", code="not_found")
    endpoint = TASKS[kind]
    version = request.headers.get("x-runway-version")
    if not version:
        return error(400, "the X-Runway-Version header is required", code="invalid_request")
    body = await json_body(request)
    refused = refuse_fields(body, endpoint.fields, endpoint.required)
    if refused:
        return refused
    problem = _invalid(endpoint, body)
    if problem:
        return error(400, problem, code="invalid_request")
    task = state.new_task(
        "runway", body["model"], str(body.get("promptText") or "(no prompt)"), "", action=endpoint.action,
        version=version, **{k: v for k, v in body.items() if k in ("ratio", "duration", "seed", "videoUri")},
        prompt_image=body.get("promptImage"), references=[r["uri"] for r in body.get("references") or []],
    )
    return JSONResponse({"id": task.id})


@router.get("/runwayml/v1/tasks/{task_id}")
def query(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != "runway":
        return error(404, f"task {task_id} not found", code="not_found")
    task.polled()
    state.stats.count("polls", task.model)
    if task.polls == 1:
        return JSONResponse({"code": "task_not_exist", "message": "task_not_exist", "data": None})
    base = str(request.base_url)
    return JSONResponse(wrapped_task(task, base) if task.polls % 2 == 0 else raw_task(task, base))


@router.get(FILES + "/{task_id}.mp4")
async def runway_file(task_id: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != "runway" or task.phase()[0] != "succeeded":
        return error(404, "file not found", code="not_found")
    state.stats.count("downloads", task.model)
    return await stream_content(state, task.id, "video", task.content_bytes, "video/mp4", rate=task.download_rate)
