"""What every adapter shares: the validation frame, and how it reads (or refuses to read)
an upstream answer."""

from __future__ import annotations

import pytest

from app.providers.base import Adapter
from app.providers.registry import adapter_for, load_catalog

ADAPTERS = {spec.family: adapter_for(spec) for spec in load_catalog().values()}
FAMILIES = sorted(ADAPTERS)


class TestValidationFrame:
    @pytest.mark.parametrize("family", FAMILIES)
    def test_adapters_write_input_rules_not_the_frame(self, family):
        adapter = type(ADAPTERS[family])
        assert adapter.validate is Adapter.validate
        assert adapter.check is not Adapter.check


class TestPollable:
    def test_only_the_synchronous_families_have_nothing_to_poll(self):
        assert sorted(f for f, adapter in ADAPTERS.items() if not adapter.pollable) == ["gpt_image", "seedream"]

    @pytest.mark.parametrize("model", sorted(load_catalog()))
    def test_build_poll_refuses_only_what_is_not_pollable(self, model):
        spec = load_catalog()[model]
        adapter = adapter_for(spec)
        if adapter.pollable:
            assert adapter.build_poll(spec, "task_1").method in ("GET", "POST")
        else:
            with pytest.raises(NotImplementedError):
                adapter.build_poll(spec, "task_1")
