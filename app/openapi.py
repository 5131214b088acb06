"""The exported API contract (`make openapi`; a test fails when it drifts)."""

from __future__ import annotations

import json


def export() -> str:
    from app.main import create_app

    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"
