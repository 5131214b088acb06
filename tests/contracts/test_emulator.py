"""The emulator against CometAPI's documented examples: it accepts each documented
request and answers in the documented shape, answers documented failures as
documented, and refuses what the docs do not allow (an undocumented path or field, a
missing required field) with a 4xx in CometAPI's error shape, so an adapter that sends
something wrong fails a test instead of passing against a lenient stand-in."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from emulator.app import create_app
from emulator.state import Config, State, Task
from tests.contracts.fixtures import FIXTURES, Fixture, ids, named, of, shape_differences

ENVELOPE = named("cometapi/error-400").response["json"]


@dataclass
class Emulated:
    http: TestClient
    state: State


@pytest.fixture
def emulator() -> Iterator[Emulated]:
    app = create_app(Config(job_seconds=0, content_bytes=4096))
    with TestClient(app, raise_server_exceptions=True) as http:
        yield Emulated(http, app.state.emulator)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1280, 720), (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


def send(emulator: Emulated, request: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {"params": request.get("params"), "headers": request.get("headers")}
    if "form" in request:
        files = {name: (f"{name}.png", _png(), kind) for name, kind in request.get("files", {}).items()}
        kwargs["files"] = [(k, (None, str(v))) for k, v in request["form"].items()] + list(files.items())
    elif "json" in request:
        kwargs["json"] = request["json"]
    return emulator.http.request(request["method"], request["path"], **kwargs)


def replaced(value: Any, swaps: dict[str, str]) -> Any:
    text = json.dumps(value)
    for old, new in swaps.items():
        text = text.replace(old, new)
    return json.loads(text)


def steer(task: Task, phase: str) -> None:
    task.job_seconds = 0 if phase in ("succeeded", "failed") else 1000.0
    task.fail = phase == "failed"
    task.stall = phase == "running"


def newest(state: State) -> Task:
    return max(state.tasks.values(), key=lambda t: t.created)


def prepare(emulator: Emulated, fixture: Fixture) -> dict[str, str]:
    """Make the task `fixture` is about (its `after` chain), in its `phase`; the documented
    ids to replace with the emulated ones."""
    if "after" not in fixture.data:
        return {}
    first = named(fixture.after)
    swaps = prepare(emulator, first)
    created = send(emulator, replaced(first.request, swaps))
    assert created.status_code == first.response["status"], created.text
    task = newest(emulator.state)
    steer(task, fixture.phase)
    swaps = {fixture.id: task.id}
    for documented, live in _derived(fixture, task).items():
        swaps[documented] = live
    return swaps


def _derived(fixture: Fixture, task: Task) -> dict[str, str]:
    """Ids the emulator derives from a task (a Suno clip, a Midjourney button)."""
    out = {}
    if "clip_id" in fixture.data:
        from emulator.families.suno import clip_id

        out[fixture.clip_id] = clip_id(task, 1)
    if "custom_id" in fixture.data:
        from emulator.families.midjourney import buttons_for

        out[fixture.custom_id] = buttons_for(task)[0]["customId"]
    if "emulated_id" in fixture.data:
        out[fixture.emulated_id] = task.params[fixture.emulated_id_param]
    return out


def ask(emulator: Emulated, fixture: Fixture) -> Any:
    swaps = prepare(emulator, fixture)
    request = replaced(fixture.request, swaps)
    for _ in range(fixture.get("poll_number", 1)):
        response = send(emulator, request)
    return response


ALL = [f for f in FIXTURES if f.get("emulated", True)]


@pytest.mark.parametrize("fixture", ALL, ids=ids(ALL))
def test_the_documented_request_gets_the_documented_answer(emulator, fixture):
    response = ask(emulator, fixture)
    assert response.status_code == fixture.response["status"], response.text
    assert shape_differences(fixture.response["json"], response.json()) == []


def _refusal(response: Any) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert shape_differences(ENVELOPE, response.json()) == []


CREATES = of("create", having="fields")


@pytest.mark.parametrize("fixture", CREATES, ids=ids(CREATES))
def test_an_undocumented_field_is_refused(emulator, fixture):
    request = copy.deepcopy(replaced(fixture.request, prepare(emulator, fixture)))
    request["json" if "json" in request else "form"]["not_a_documented_field"] = "1"
    _refusal(send(emulator, request))


REQUIRED = [(f, name) for f in CREATES for name in f.required + f.get("required_here", [])
            if name not in f.request.get("files", {})]


@pytest.mark.parametrize(("fixture", "name"), REQUIRED, ids=[f"{f.name}-{n}" for f, n in REQUIRED])
def test_a_missing_required_field_is_refused(emulator, fixture, name):
    request = copy.deepcopy(replaced(fixture.request, prepare(emulator, fixture)))
    request["json" if "json" in request else "form"].pop(name, None)
    _refusal(send(emulator, request))


@pytest.mark.parametrize("path", ["/v1/video", "/bria/image/generate", "/suno/submit/songs", "/runway/v1/image_to_video"])
def test_an_undocumented_path_is_a_404_in_the_error_shape(emulator, path):
    response = emulator.http.post(path, json={"prompt": "x"})
    assert response.status_code == 404
    assert shape_differences(ENVELOPE, response.json()) == []
