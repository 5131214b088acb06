"""Helpers for the video families' tests: catalogue specs, validation contexts,
uploads and end-to-end jobs through the real pipeline."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

from app.providers.base import InputFile, ModelSpec, ValidationContext
from app.providers.registry import get_model
from tests.helpers import submit, wait_terminal


def spec(model_id: str, **overrides: Any) -> ModelSpec:
    """A catalogue model, optionally with some options changed (as a catalogue edit would)."""
    base = get_model(model_id)
    if not overrides:
        return base
    return ModelSpec(**{**base.__dict__, "options": {**base.options, **overrides}})


def no_records() -> ValidationContext:
    return ValidationContext(client_id="cli_test", get_job=lambda _id: None, get_upload=lambda _id: None)


def png(width: int = 64, height: int = 36, color: tuple[int, int, int] = (20, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def input_file(label: str, data: bytes, content_type: str = "image/png") -> InputFile:
    return InputFile(label, f"{label}.png", content_type, lambda: io.BytesIO(data))


def upload(http: httpx.Client, client: dict, data: bytes, name: str = "frame.png") -> str:
    response = http.post("/v1/uploads", files={"file": (name, data, "image/png")}, headers=client.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def run_job(http: httpx.Client, client: dict, model: str, job_input: dict[str, Any]) -> dict:
    created = submit(http, client, model=model, input=job_input)
    return wait_terminal(http, client, created["id"], timeout=90)


def task_with(emulator: Any, family: str, text: str) -> dict:
    [task] = [t for t in emulator.tasks() if t["family"] == family and text in t["prompt"]]
    return task
