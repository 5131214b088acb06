"""The contract fixtures themselves: every one names its source, says whether CometAPI
documents it, and every family of the catalogue has its documented calls here."""

from __future__ import annotations

import pytest

from app.providers.registry import load_catalog
from tests.contracts.fixtures import FIXTURES, ids

CALLS = {"create", "poll", "batch_poll", "error"}
FAMILIES = {spec.family for spec in load_catalog().values()}


@pytest.mark.parametrize("fixture", FIXTURES, ids=ids(FIXTURES))
def test_a_fixture_names_its_source_and_says_whether_it_is_documented(fixture):
    assert fixture.source.startswith("https://")
    assert isinstance(fixture.verified, bool)
    if not fixture.verified:
        assert len(fixture.why) > 20, "say why the shape is not CometAPI's documented one"
    assert fixture.call in CALLS
    assert {"method", "path"} <= set(fixture.request)
    assert isinstance(fixture.response["status"], int)
    if fixture.call == "create" and "fields" in fixture.data:
        assert set(fixture.required) <= set(fixture.fields)
    if "after" in fixture.data:
        assert fixture.phase in {"queued", "running", "succeeded", "failed"} and fixture.id in str(fixture.request)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_has_its_create_and_result_calls(family):
    mine = [f for f in FIXTURES if f.family == family]
    assert any(f.call == "create" for f in mine)
    # where the result is read from: a poll, or a synchronous create answer
    assert any(f.call in ("poll", "batch_poll") or "state" in f.get("expect", {}) for f in mine)


def test_the_fixture_folders_are_the_catalogues_families_and_cometapis_own():
    assert {f.family for f in FIXTURES} == FAMILIES | {"cometapi"}
