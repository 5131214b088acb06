"""The OpenAI-compatible `POST /v1/images/generations` answer, shared by the
synchronous families (Seedream, gpt-image): `{created, data: [{url | b64_json}],
usage}`. The call itself is the whole job, so create answers with the finished
result and the collector re-reads it from the stored create body.

Images answered as `b64_json` become inline artifacts (`ArtifactSource.data`);
those answered as `url` are fetched like any other result link.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from app.providers.base import (
    ArtifactSource,
    CreateResult,
    ModelSpec,
    PollResult,
    UnreadableAnswer,
    UpstreamState,
    as_object,
    parse_timestamp,
)
from app.providers.shared import numbered


def synchronous_id(spec: ModelSpec, body: Mapping[str, Any]) -> str:
    """The answer has no task id; this names the call for the job's `upstream.id`."""
    return str(body.get("id") or f"{spec.upstream_model}@{body.get('created') or 'sync'}")


def parse_images(body: Any, content_type: str) -> PollResult:
    body = as_object(body, "the images answer")
    entries = body.get("data") or []
    if not isinstance(entries, list):
        raise UnreadableAnswer(f"the images answer's data is not a list: {str(entries)[:200]}")
    items = [item for item in entries if isinstance(item, Mapping)]
    images = [item for item in items if item.get("url") or item.get("b64_json")]
    created = parse_timestamp(body.get("created"))
    if not images:
        error = next((item["error"] for item in items if isinstance(item.get("error"), Mapping)), None)
        error = as_object(error or body.get("error") or {}, "the error")
        return PollResult(
            state=UpstreamState.FAILED, raw_status="failed", payload=dict(body), finished_at=created,
            error_code=str(error.get("code") or "no_image"),
            error_message=str(error.get("message") or "the upstream answered without an image"),
        )
    outputs = []
    for index, item in enumerate(images):
        name = numbered("image", len(images), index)
        if item.get("b64_json"):
            try:
                data = base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, TypeError, ValueError) as exc:
                raise UnreadableAnswer(f"image {index + 1} is not valid base64: {exc}") from None
            outputs.append(ArtifactSource(name, data=data, content_type=content_type))
        else:
            outputs.append(ArtifactSource(name, url=str(item["url"]), content_type=content_type))
    return PollResult(state=UpstreamState.SUCCEEDED, raw_status="completed", progress=100, outputs=outputs,
                      payload=dict(body), finished_at=created)


def immediate(spec: ModelSpec, body: Any, content_type: str) -> CreateResult:
    result = parse_images(body, content_type)
    return CreateResult(upstream_id=synchronous_id(spec, body), immediate=result)
