"""The catalogue as loaded: kind < family < model layers, overlays, and status words."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from app.providers.base import UpstreamState, upstream_state
from app.providers.registry import CatalogError, load_catalog


def with_overlay(tmp_path: Path, text: str) -> dict:
    overlay = tmp_path / "models.toml"
    overlay.write_text(text)
    return load_catalog(overlay)


class TestLayers:
    def test_family_values_sit_between_kind_and_model(self, tmp_path):
        specs = with_overlay(tmp_path, '[families.veo]\npoll_interval = 7\n\n[models.veo3]\npoll_interval = 9\n')
        assert (specs["veo3"].poll_interval, specs["veo3-fast"].poll_interval) == (9, 7)
        assert specs["sora-2"].poll_interval == 10  # the video kind's default

    def test_a_model_added_by_an_overlay_takes_its_familys_values(self, tmp_path):
        specs = with_overlay(tmp_path, '[models."veo3-staging"]\nfamily = "veo"\nupstream_model = "veo3"\n')
        staging, veo3 = specs["veo3-staging"], specs["veo3"]
        assert (staging.kind, staging.unverified, staging.options) == (veo3.kind, veo3.unverified, veo3.options)

    def test_a_family_can_be_switched_off(self, tmp_path):
        specs = with_overlay(tmp_path, '[families.veo]\nenabled = false\n\n[models.veo3]\nenabled = true\n')
        assert "veo3" in specs and "veo3-fast" not in specs

    def test_a_model_with_no_kind_anywhere_is_refused(self, tmp_path):
        with pytest.raises(CatalogError, match="'odd' has no kind"):
            with_overlay(tmp_path, '[models.odd]\nfamily = "odd"\n')


class TestStatusWords:
    def test_a_family_adds_its_own_words_to_a_shared_table(self):
        specs = load_catalog()
        assert upstream_state(specs["midjourney"], "SUCCESS") is UpstreamState.SUCCEEDED  # cometapi_task, upper case
        assert upstream_state(specs["midjourney"], "MODAL") is UpstreamState.FAILED  # the family's own
        assert upstream_state(specs["kling-omni-video"], "in_progress") is UpstreamState.RUNNING

    def test_an_overlay_corrects_a_familys_words(self, tmp_path):
        specs = with_overlay(tmp_path, '[families.veo]\nstatuses = { rendering = "running" }\n')
        assert upstream_state(specs["veo3"], "rendering") is UpstreamState.RUNNING
        assert upstream_state(specs["veo3"], "queued") is UpstreamState.UNKNOWN

    def test_an_unknown_word_is_logged_once_per_family(self):
        specs = load_catalog()
        with capture_logs() as logs:
            for model in ("sora-2", "sora-2-pro", "veo3"):
                assert upstream_state(specs[model], "defrosting") is UpstreamState.UNKNOWN
        assert [(e["family"], e["status_word"]) for e in logs] == [("sora", "defrosting"), ("veo", "defrosting")]

    def test_a_word_mapped_to_unknown_is_not_logged(self):
        with capture_logs() as logs:
            assert upstream_state(load_catalog()["bria-edit"], "UNKNOWN") is UpstreamState.UNKNOWN
        assert logs == []

    @pytest.mark.parametrize(("text", "message"), [
        ('[families.veo]\nstatus_tables = ["nope"]\n', "status table 'nope'"),
        ('[families.veo]\nstatuses = { queued = "waiting" }\n', "'waiting' is not a valid UpstreamState"),
    ])
    def test_a_table_that_cannot_be_read_is_refused_at_load(self, tmp_path, text, message):
        with pytest.raises(CatalogError, match=message):
            with_overlay(tmp_path, text)


class TestProvenance:
    def test_a_model_is_verified_only_with_sources_and_nothing_guessed(self):
        for spec in load_catalog().values():
            assert spec.verified == (spec.unverified is None)
            if spec.verified:
                assert spec.sources, spec.id
            assert all(url.startswith("https://") for url in spec.sources)

    def test_a_claim_of_a_documented_contract_without_sources_is_refused(self, tmp_path):
        with pytest.raises(CatalogError, match="names no sources"):
            with_overlay(tmp_path, '[models.odd]\nfamily = "odd"\nkind = "image"\n')

    def test_an_overlay_says_what_is_guessed_in_words(self, tmp_path):
        specs = with_overlay(tmp_path, '[models.veo3]\nunverified = "the whole answer"\n')
        assert (specs["veo3"].verified, specs["veo3"].unverified) == (False, "the whole answer")
        with pytest.raises(CatalogError, match="in words"):
            with_overlay(tmp_path, '[models.veo3]\nunverified = 3\n')

    def test_the_models_endpoint_says_what_is_verified_and_where_from(self, api, make_client):
        client = make_client()
        listed = {m["id"]: m for m in api.get("/v1/models", headers=client.headers).json()["data"]}
        for spec in load_catalog().values():
            model = listed[spec.id]
            assert (model["verified"], model["sources"], model["unverified"]) == (
                spec.verified, list(spec.sources), spec.unverified)
        assert listed["minimax-hailuo-02"]["verified"] is False
        assert "MiniMax" in listed["minimax-hailuo-02"]["unverified"]
