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
