"""The catalogue as loaded: every model's options, timings and status words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.providers.registry import adapter_for, load_catalog
from app.providers.shared import catalogue_status

HERE = Path(__file__).parent
BEFORE = json.loads((HERE / "catalog_before.json").read_text())
OVERLAYS = {"shipped": None, "with_overlay": HERE.parent / "models.toml"}


def loaded(extra: Path | None) -> dict:
    out = {}
    for model_id, spec in load_catalog(extra).items():
        entry = {k: v for k, v in spec.__dict__.items() if k != "options"}
        entry["options"] = {k: v for k, v in spec.options.items() if k != "statuses"}
        adapter = adapter_for(spec)
        entry["states"] = {w: str(catalogue_status(adapter, spec, w)) for w in BEFORE["shipped"].get(
            model_id, BEFORE["with_overlay"].get(model_id, {})).get("states", {})}
        out[model_id] = entry
    return out


class TestCatalogueLoadsAsBefore:
    """A snapshot taken before the catalogue was reorganised: the same models, values and status words."""

    @pytest.mark.parametrize("layers", sorted(OVERLAYS))
    def test_every_model_is_as_before(self, layers):
        now, before = loaded(OVERLAYS[layers]), BEFORE[layers]
        assert sorted(now) == sorted(before)
        for model_id, entry in before.items():
            assert json.loads(json.dumps(now[model_id])) == entry, model_id
