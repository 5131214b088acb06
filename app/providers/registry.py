"""Model catalogue and adapter registry.

Model ids, their upstream names and constraints live in TOML files
(`app/providers/catalog/*.toml`, then `COMETJOBS_MODELS_FILE` on top), so a
renamed or retired upstream model is a configuration change. Each model names
its `family`; the family names the adapter module `app.providers.<family>`.

A model's values are layered: `[kinds.<kind>]` defaults, then `[families.<family>]`,
then the model's own `[models."<id>"]` entry; the later layer wins, key by key.
`sources` lists CometAPI's pages for the calls a model makes; `unverified` says, in
words, what is guessed where those pages are silent (`""` on a model clears its
family's). A model with nothing guessed must name its sources. A family's `statuses` (upstream word -> pending / running / succeeded / failed /
unknown) may start from named `[status_tables.<name>]` listed in `status_tables`.
"""

from __future__ import annotations

import importlib
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.core.settings import get_settings
from app.providers.base import Adapter, ModelSpec, UpstreamState

CATALOG_DIR = Path(__file__).parent / "catalog"
_SECTIONS = ("kinds", "families", "models", "status_tables")
_SPEC_FIELDS = {
    "family", "kind", "upstream_model", "poll_first_delay", "poll_interval", "poll_interval_max",
    "queue_deadline", "stall_deadline", "absolute_deadline", "unverified", "sources",
    "max_in_flight", "family_max_in_flight", "price",
}
_NOT_OPTIONS = _SPEC_FIELDS | {"enabled", "status_tables"}


class UnknownModel(LookupError):
    pass


class CatalogError(ValueError):
    """A catalogue entry that cannot describe a model; raised at load, before any job runs."""


def _merge(into: dict[str, Any], layer: dict[str, Any]) -> None:
    for section in _SECTIONS:
        for key, values in layer.get(section, {}).items():
            into.setdefault(section, {}).setdefault(key, {}).update(values)


def _statuses(model_id: str, entry: dict[str, Any], tables: dict[str, Any]) -> dict[str, UpstreamState]:
    words: dict[str, Any] = {}
    for name in entry.get("status_tables", []):
        if name not in tables:
            raise CatalogError(f"model {model_id!r} names status table {name!r}, which no catalogue file has")
        words.update(tables[name])
    words.update(entry.get("statuses", {}))
    try:
        return {word: UpstreamState(state) for word, state in words.items()}
    except ValueError as exc:
        raise CatalogError(f"model {model_id!r}: {exc}; statuses map to {', '.join(UpstreamState)}") from None


def _provenance(model_id: str, entry: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
    sources = entry.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) and s.startswith("https://") for s in sources):
        raise CatalogError(f"model {model_id!r}: sources must be a list of https URLs")
    guessed = entry.get("unverified")
    if guessed is True:
        guessed = "unverified (the catalogue entry says what is guessed nowhere)"
    elif guessed in (False, ""):
        guessed = None
    elif guessed is not None and not isinstance(guessed, str):
        raise CatalogError(f"model {model_id!r}: unverified must say what is guessed, in words")
    if guessed is None and not sources:
        raise CatalogError(f"model {model_id!r} claims a documented contract but names no sources; "
                           "list them, or say what is guessed in `unverified`")
    return tuple(sources), guessed


def load_catalog(extra: Path | None = None) -> dict[str, ModelSpec]:
    raw: dict[str, Any] = {}
    files = sorted(CATALOG_DIR.glob("*.toml"))
    if extra:
        files.append(extra)
    for path in files:
        with path.open("rb") as fh:
            _merge(raw, tomllib.load(fh))
    kinds, families, tables = (raw.get(section, {}) for section in ("kinds", "families", "status_tables"))
    specs: dict[str, ModelSpec] = {}
    for model_id, entry in raw.get("models", {}).items():
        entry = {**families.get(entry.get("family"), {}), **entry}
        if entry.get("enabled", True) is False:
            continue
        for key in ("family", "kind"):
            if key not in entry:
                raise CatalogError(f"model {model_id!r} has no {key} (set on the model or its family)")
        base = {**kinds.get(entry["kind"], {}), **entry}
        options = {k: v for k, v in base.items() if k not in _NOT_OPTIONS}
        if "statuses" in base or "status_tables" in base:
            options["statuses"] = _statuses(model_id, base, tables)
        sources, guessed = _provenance(model_id, base)
        specs[model_id] = ModelSpec(
            id=model_id,
            family=base["family"],
            kind=base["kind"],
            upstream_model=base.get("upstream_model", model_id),
            options=options,
            poll_first_delay=float(base["poll_first_delay"]),
            poll_interval=float(base["poll_interval"]),
            poll_interval_max=float(base["poll_interval_max"]),
            queue_deadline=float(base["queue_deadline"]),
            stall_deadline=float(base["stall_deadline"]),
            absolute_deadline=float(base["absolute_deadline"]),
            sources=sources,
            unverified=guessed,
            max_in_flight=int(base.get("max_in_flight", 0)),
            # A family's cap is the family's alone: only its [families.X] table sets it.
            family_max_in_flight=int(families.get(base["family"], {}).get("family_max_in_flight", 0)),
            price=float(base.get("price", 0.0)),
        )
    return specs


@lru_cache
def catalog() -> dict[str, ModelSpec]:
    return load_catalog(get_settings().models_file)


@lru_cache
def adapter_for_family(family: str) -> Adapter:
    module = importlib.import_module(f"app.providers.{family}")
    adapter: Adapter = module.ADAPTER
    return adapter


def get_model(model_id: str) -> ModelSpec:
    try:
        return catalog()[model_id]
    except KeyError:
        raise UnknownModel(model_id) from None


def adapter_for(spec: ModelSpec) -> Adapter:
    return adapter_for_family(spec.family)


def all_adapters() -> dict[str, Adapter]:
    return {spec.family: adapter_for(spec) for spec in catalog().values()}
