"""Result files the way providers hand them out: plain links to a delivery host
(Replicate's delivery URLs, Flux's `result.sample`, Bria's temp links, Seedream's
signed object-storage URLs, Suno's CDN). The emulator serves them itself, on its
own base URL, under `/cdn/{family}/{task id}/{file}`; query strings (signatures)
are accepted and ignored."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import get_state, stream_content
from emulator.state import Task

router = APIRouter()


def cdn_url(base_url: str, task: Task, file: str, query: str = "") -> str:
    return f"{base_url.rstrip('/')}/cdn/{task.family}/{task.id}/{file}" + (f"?{query}" if query else "")


def file_size(task: Task, file: str) -> int:
    """Covers and thumbnails are small; everything else is the task's content size."""
    return max(1024, task.content_bytes // 16) if file.startswith("cover") else task.content_bytes


@router.get("/cdn/{family}/{task_id}/{file}")
async def cdn_file(family: str, task_id: str, file: str, request: Request) -> Response:
    state = get_state(request)
    task = state.tasks.get(task_id)
    if task is None or task.family != family or task.phase()[0] != "succeeded":
        return JSONResponse({"error": "NoSuchKey"}, status_code=404)
    media_type = mimetypes.guess_type(file)[0] or "application/octet-stream"
    state.stats.count("downloads", task.model)
    return await stream_content(state, task.id, file, file_size(task, file), media_type, rate=task.download_rate)
