"""Pieces the adapters share: turning uploads into inline images, and reading
catalogue-driven result locations and batch answers."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from app.core.settings import get_settings
from app.providers.base import URL_SCHEMES, InputFile, Problems, UnreadableAnswer, as_object, first


def uploads_among(pairs: Iterable[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """The (label, upload id) pairs the pipeline must resolve; URLs go upstream as they are."""
    return [(label, ref) for label, ref in pairs if ref and ref.startswith("upl_")]


def inline_image(ref: str, label: str, files: list[InputFile], data_uri: bool = True) -> str:
    """A URL as given, or the resolved upload as base64 (a `data:` URI unless the upstream wants it bare)."""
    for item in files:
        if item.field == label:
            with item.open() as fh:
                encoded = base64.b64encode(fh.read()).decode()
            return f"data:{item.content_type};base64,{encoded}" if data_uri else encoded
    return ref


def linked(ref: str, label: str, files: list[InputFile]) -> str:
    """A URL as given, or the signed https link the pipeline made for the upload (input_links)."""
    for item in files:
        if item.field == label and item.url:
            return item.url
    return ref


def require_public_links(problems: Problems, field: str, ref: str) -> None:
    """An upload the upstream must fetch by link needs our API reachable over https."""
    if ref.startswith("upl_") and not get_settings().public_base_url.startswith("https://"):
        problems.add(field, "an upload reaches this model as a link to our API, which needs "
                     "COMETJOBS_PUBLIC_BASE_URL to be an https address the internet can reach; it is not: "
                     "give an https URL instead", "public_base_url_not_https")


def result_url(body: Any, paths: Iterable[str]) -> str | None:
    value = first(body, *paths)
    return value if isinstance(value, str) and value.startswith(URL_SCHEMES) else None


def batch_tasks(body: Any) -> list[Any]:
    """The tasks in a batch fetch answer: a list, or an object whose `data` is one (or null: none)."""
    tasks = body if isinstance(body, list) else as_object(body, "the batch answer").get("data") or []
    if not isinstance(tasks, list):
        raise UnreadableAnswer(f"the batch answer's data is not a list of tasks: {str(tasks)[:200]}")
    return tasks


def numbered(name: str, count: int, index: int) -> str:
    """`video` for a single result, `video_1`, `video_2`, ... for several."""
    return name if count == 1 else f"{name}_{index + 1}"
