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


def test_bearer_auth_is_declared_on_every_authenticated_operation():
    spec = json.loads(export())
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            # The signed upload link carries its own authority (an HMAC signature), not a key.
            public = path in ("/healthz", "/readyz", "/metrics", "/v1/uploads/{upload_id}/content")
            assert ("security" in operation) is not public, (method, path)
            assert public or "401" in operation["responses"], (method, path)


def test_the_front_door_answers_are_documented_where_they_can_happen():
    spec = json.loads(export())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if "requestBody" in operation:
                assert {"400", "408", "413", "415"} <= set(responses), (method, path)
            if operation.get("parameters", []) and any(p["in"] in ("path", "query") for p in operation["parameters"]):
                assert "400" in responses, (method, path)


def test_declared_integers_are_64_bit():
    schemas = json.loads(export())["components"]["schemas"]
    steps = next(s for s in schemas["FluxInput"]["properties"]["steps"]["anyOf"] if s.get("type") == "integer")
    assert steps["exclusiveMaximum"] == 2**63


def test_every_webhook_event_is_described_with_its_envelope_and_signature_headers():
    from app.jobs.states import JobEvent

    spec = json.loads(export())
    assert spec["openapi"].startswith("3.1")
    schemas = spec["components"]["schemas"]
    assert set(spec["webhooks"]) == {str(e) for e in JobEvent}
    for event, item in spec["webhooks"].items():
        operation = item["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header" and p["required"]}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}, event
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = schemas[ref.rsplit("/", 1)[1]]
        assert set(body["required"]) == {"id", "type", "seq", "created_at", "data"}, event
        assert body["properties"]["type"]["const"] == event
        assert body["properties"]["data"]["$ref"] == "#/components/schemas/JobOut"
        assert {"200", "410", "4XX", "5XX"} <= set(operation["responses"]), event
