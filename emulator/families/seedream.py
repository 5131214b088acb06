"""The synchronous `POST /v1/images/generations` call, for Seedream
(`doubao-seedream-*`: `url` or `b64_json`, signed object-storage links; CometAPI's
bytedance-image-generation page) and GPT image models (always `b64_json`; CometAPI's
images-generations page, whose parameters are OpenAI's Create image reference). The
call lasts the task's job time, then answers with the images; `[fail]` in the prompt
is refused as the providers' moderation does (UNVERIFIED: the refusals' codes are the
providers' own). UNVERIFIED for Seedream 3.0: `seed` and `guidance_scale`, Volcengine's
fields, which CometAPI's page does not list.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.app import error, get_state, json_body, refuse_fields
from emulator.families.cdn import cdn_url
from emulator.state import State, Task, content_stream

router = APIRouter()

SEEDREAM = {"doubao-seedream-4-0-250828", "doubao-seedream-4-5-251128", "doubao-seedream-3-0-t2i-250415"}
GPT_IMAGE = {"gpt-image-1", "gpt-image-2"}
SEEDREAM_FIELDS = {"model", "prompt", "size", "response_format", "image", "watermark", "sequential_image_generation",
                   "sequential_image_generation_options", "seed", "guidance_scale"}
GPT_IMAGE_FIELDS = {"model", "prompt", "n", "quality", "size", "background", "output_format", "output_compression",
                    "moderation", "response_format", "style", "user", "partial_images", "stream"}
TOS_QUERY = ("X-Tos-Algorithm=TOS4-HMAC-SHA256&X-Tos-Credential=emulated%2Fcn-beijing%2Ftos%2Frequest"
             "&X-Tos-Expires=86400&X-Tos-Signature=emulated&X-Tos-SignedHeaders=host")


def _inline(state: State, task: Task, file: str) -> str:
    seed = f"{task.id}:{file}"
    data = b"".join(content_stream(seed, task.content_bytes))
    state.stats.served_sha256[seed] = hashlib.sha256(data).hexdigest()
    return base64.b64encode(data).decode()


async def _wait(task: Task) -> None:
    if task.job_seconds > 0:
        await asyncio.sleep(task.job_seconds)


@router.post("/v1/images/generations")
async def generations(request: Request) -> Response:
    state = get_state(request)
    body = await json_body(request)
    refused = refuse_fields(body, SEEDREAM_FIELDS | GPT_IMAGE_FIELDS, ("model", "prompt"))
    if refused:
        return refused
    model, prompt = str(body["model"]), str(body["prompt"])
    if model not in SEEDREAM | GPT_IMAGE:
        return error(400, f"model {model} is not supported on /v1/images/generations", code="invalid_request")
    refused = refuse_fields(body, GPT_IMAGE_FIELDS if model in GPT_IMAGE else SEEDREAM_FIELDS)
    if refused:
        return refused
    if model in GPT_IMAGE:
        return await _gpt_image(state, body, model, prompt)
    return await _seedream(state, request, body, model, prompt)


async def _seedream(state: State, request: Request, body: dict[str, Any], model: str, prompt: str) -> Response:
    fmt = body.get("response_format", "url")
    if fmt not in ("url", "b64_json"):
        return error(400, "response_format must be url or b64_json", code="InvalidParameter")
    references = body.get("image") or []
    if len(references if isinstance(references, list) else [references]) > 14:
        return error(400, "at most 14 reference images", code="InvalidParameter")
    many = body.get("sequential_image_generation") == "auto"
    count = int((body.get("sequential_image_generation_options") or {}).get("max_images", 1)) if many else 1
    task = state.new_task("seedream", model, prompt, "", size=body.get("size"), images=count)
    await _wait(task)
    if task.fail:
        return error(400, "The request failed because the input text may contain sensitive information.",
                     code="InputTextSensitiveContentDetected", type_="BadRequest")
    data = []
    for index in range(count):
        file = f"image-{index + 1}.jpeg"
        item = {"url": cdn_url(str(request.base_url), task, file, TOS_QUERY)} if fmt == "url" else {
            "b64_json": _inline(state, task, file)}
        data.append(item | {"size": str(body.get("size") or "2048x2048")})
    return JSONResponse({"model": model, "created": int(time.time()), "data": data,
                         "usage": {"generated_images": count, "output_tokens": 16384 * count,
                                   "total_tokens": 16384 * count}})


async def _gpt_image(state: State, body: dict[str, Any], model: str, prompt: str) -> Response:
    if "response_format" in body:
        return error(400, "Unknown parameter: 'response_format'.", code="unknown_parameter",
                     type_="invalid_request_error")
    count = int(body.get("n") or 1)
    task = state.new_task("gpt_image", model, prompt, "", size=body.get("size"), images=count)
    await _wait(task)
    if task.fail:
        return error(400, "Your request was rejected as a result of our safety system.", code="moderation_blocked",
                     type_="image_generation_user_error")
    fmt = str(body.get("output_format") or "png")
    data = [{"b64_json": _inline(state, task, f"image-{i + 1}.{fmt}")} for i in range(count)]
    return JSONResponse({"created": int(time.time()), "data": data, "background": body.get("background", "opaque"),
                         "output_format": fmt, "quality": body.get("quality", "auto"),
                         "size": body.get("size", "1024x1024"),
                         "usage": {"input_tokens": 50, "input_tokens_details": {"image_tokens": 0, "text_tokens": 50},
                                   "output_tokens": 272 * count,
                                   "output_tokens_details": {"image_tokens": 272 * count, "text_tokens": 0},
                                   "total_tokens": 50 + 272 * count}})
