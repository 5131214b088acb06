"""The committed API contract matches what the app serves (`make openapi` regenerates it)."""

from __future__ import annotations

import json
from pathlib import Path

from app.openapi import export

SPEC = Path(__file__).parent.parent / "openapi" / "openapi.json"


def test_committed_spec_matches_the_app():
    assert SPEC.read_text() == export(), "openapi/openapi.json is stale: run `make openapi` and commit it"


def test_every_operation_has_a_stable_id_and_problem_errors():
    spec = json.loads(export())
    ids = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            for code, response in operation["responses"].items():
                if code.isdigit() and int(code) >= 400:
                    assert list(response.get("content", {})) == ["application/problem+json"], (path, method, code)
    assert len(ids) == len(set(ids))
    assert "createJob" in ids and "getJob" in ids


def test_per_model_input_schemas_are_documented():
    spec = json.loads(export())
    schemas = spec["components"]["schemas"]
    refs = [r["$ref"] for r in schemas["JobCreate"]["properties"]["input"]["anyOf"]]
    assert "#/components/schemas/SoraInput" in refs
    assert "storyboard" in schemas["SoraInput"]["description"].lower()
    assert {"sora-2", "sora-2-pro"} <= set(schemas["SoraInput"]["x-models"])
    assert schemas["DependencyProblem"]["properties"]["failed"]["type"] == "array"
    assert schemas["Problem"]["properties"]["code"]["type"] == "string"
