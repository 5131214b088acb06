"""CometAPI's documented example requests and answers, one JSON file per call under
`tests/contracts/<family>/`, each with the page it comes from.

A fixture file:

- `source`: the page (https URL); `verified`: false when the shape is not CometAPI's
  own (a third-party relay's, or the provider's), with `why`; `notes` for anything else.
- `call`: `create`, `poll`, `batch_poll` or `error`.
- `request`: `method`, `path` (the documented example's, with its ids), and `json`,
  `form`, `params` and `headers` as documented; `route` is the path with `{placeholders}`.
- `response`: `status` and `json`, the documented answer.
- create calls: `fields` (every body field the page lists for the route), `required`
  (what the route always requires) and `required_here` (what this request's mode of the
  route requires besides, e.g. a continuation's clip); and, when one
  of our models makes exactly this call, `model` and `input` (its job input), with
  `parent` (a job record) for calls that act on an earlier job.
- answers we read: `expect` (what the adapter must make of the answer: `upstream_id`,
  `state`, `outputs`, `error_code`, `error_message`, `progress`, `raises`).
- calls about an existing task: `after` (the create fixture that makes the task in the
  emulator), `phase` (queued / running / succeeded / failed) and `id` (the documented
  id in `request`, replaced by the emulated task's); `poll_number` when the answer
  depends on how often the task was asked about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Fixture:
    path: Path
    data: dict[str, Any]

    @property
    def family(self) -> str:
        return self.path.parent.name

    @property
    def name(self) -> str:
        return f"{self.family}/{self.path.stem}"

    def __getattr__(self, key: str) -> Any:
        try:
            return self.data[key]
        except KeyError:
            raise AttributeError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def load() -> list[Fixture]:
    return [Fixture(path, json.loads(path.read_text())) for path in sorted(HERE.glob("*/*.json"))]


FIXTURES = load()


def named(name: str) -> Fixture:
    [fixture] = [f for f in FIXTURES if f.name == name]
    return fixture


def of(call: str, *, having: str | None = None) -> list[Fixture]:
    return [f for f in FIXTURES if f.call == call and (having is None or having in f.data)]


def ids(fixtures: list[Fixture]) -> list[str]:
    return [f.name for f in fixtures]


def shape_differences(documented: Any, actual: Any, where: str = "") -> list[str]:
    """How `actual` differs in shape from `documented`: the same keys at every level and
    the same JSON types (a documented null stands for any type; numbers are numbers)."""
    if documented is None or actual is None:
        return []
    if isinstance(documented, dict):
        if not isinstance(actual, dict):
            return [f"{where or '.'}: an object was documented, got {type(actual).__name__}"]
        out = [f"{where}.{k}: documented, missing" for k in documented.keys() - actual.keys()]
        out += [f"{where}.{k}: not documented" for k in actual.keys() - documented.keys()]
        for key in documented.keys() & actual.keys():
            out += shape_differences(documented[key], actual[key], f"{where}.{key}")
        return out
    if isinstance(documented, list):
        if not isinstance(actual, list):
            return [f"{where or '.'}: a list was documented, got {type(actual).__name__}"]
        if documented and actual:
            return shape_differences(documented[0], actual[0], f"{where}[0]")
        return []
    if _kind(documented) != _kind(actual):
        return [f"{where or '.'}: {_kind(documented)} documented, got {_kind(actual)}"]
    return []


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__
