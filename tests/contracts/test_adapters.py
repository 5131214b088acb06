"""Our adapters against CometAPI's documented examples: where one of our models makes a
documented call it makes exactly the documented request; every request a model's
example makes on a documented route sends documented fields only, and the required
ones; every documented answer reads as it should."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest

from app.providers.base import ValidationContext
from app.providers.http import UpstreamError, classify
from app.providers.registry import adapter_for, load_catalog
from tests.contracts.fixtures import FIXTURES, Fixture, ids, of

CATALOG = load_catalog()


def parent_of(fixture: Fixture) -> Any:
    return SimpleNamespace(**fixture.parent) if fixture.get("parent") else None


def context(parent: Any = None) -> ValidationContext:
    return ValidationContext(client_id="cli_test", get_job=lambda _id: parent, get_upload=lambda _id: None)


def body_of(request: Any) -> dict[str, Any]:
    return request.json if request.json is not None else dict(request.data or {})


EXACT = of("create", having="input")


@pytest.mark.parametrize("fixture", EXACT, ids=ids(EXACT))
def test_our_model_makes_exactly_the_documented_request(fixture):
    spec = CATALOG[fixture.model]
    adapter = adapter_for(spec)
    parent = parent_of(fixture)
    job_input = adapter.validate(spec, fixture.input, context(parent))
    request = adapter.build_create(spec, job_input, [], parent)
    documented = fixture.request
    assert (request.method, request.path) == (documented["method"], documented["path"])
    assert body_of(request) == documented.get("json", documented.get("form"))
    for name, value in documented.get("headers", {}).items():
        assert (request.headers or {}).get(name) == value


ROUTES = of("create", having="fields")


def _route(fixture: Fixture) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(fixture.request.get("route", fixture.request["path"]))) + "$")


@pytest.mark.parametrize("fixture", ROUTES, ids=ids(ROUTES))
def test_every_verified_model_on_a_documented_route_sends_documented_fields_only(fixture):
    """What an unverified model sends beyond the page is what its `unverified` note owns up to."""
    route = _route(fixture)
    for spec in (s for s in CATALOG.values() if s.family == fixture.family and s.verified):
        adapter = adapter_for(spec)
        request = adapter.build_create(spec, adapter.validate(spec, adapter.example_input(spec), context()), [], None)
        if request.method != fixture.request["method"] or not route.match(request.path):
            continue
        sent = set(body_of(request)) | {f.field for f in request.files}
        assert sent <= set(fixture.fields), (spec.id, sent - set(fixture.fields))
        assert set(fixture.required) <= sent, (spec.id, set(fixture.required) - sent)
        for name in fixture.request.get("headers", {}):
            assert name in (request.headers or {}), (spec.id, name)


READ = [f for f in FIXTURES if "expect" in f.data]


@pytest.mark.parametrize("fixture", READ, ids=ids(READ))
def test_the_documented_answer_reads_as_expected(fixture):
    expect, body = fixture.expect, fixture.response["json"]
    if fixture.call == "error":
        error = classify(fixture.response["status"], {}, json.dumps(body))
        assert {key: getattr(error, key) for key in expect} == expect
        return
    spec = CATALOG[fixture.model]
    adapter = adapter_for(spec)
    if "raises" in expect:
        with pytest.raises(UpstreamError) as caught:
            adapter.parse_create(spec, body)
        assert caught.value.code == expect["raises"]
        return
    if fixture.call == "create":
        created = adapter.parse_create(spec, body)
        if "upstream_id" in expect:
            assert created.upstream_id == expect["upstream_id"]
        result = created.immediate
        if "state" not in expect:
            assert result is None
            return
    elif fixture.call == "batch_poll":
        result = adapter.parse_batch_poll(spec, [fixture.id], body)[fixture.id]
    else:
        result = adapter.parse_poll(spec, fixture.id, body)
    assert result is not None and result.state.value == expect["state"]
    if "outputs" in expect:
        assert [[o.name, o.url or (o.request.path if o.request else None)] for o in result.outputs] == expect["outputs"]
    for key in ("error_code", "error_message", "progress"):
        if key in expect:
            assert getattr(result, key) == expect[key]
