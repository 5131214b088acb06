"""Identifiers: ULIDs after a prefix, in Crockford base32, sortable by creation time."""

from __future__ import annotations

import re
import time

from app.core.ids import encode, new_id, ulid


def test_encode_is_crockford_base32_of_the_128_bit_value():
    assert encode(0) == "0" * 26
    assert encode(2**128 - 1) == "7" + "Z" * 25
    assert encode(31) == "0" * 25 + "Z"
    assert encode(32) == "0" * 24 + "10"
    # The canonical example from the ULID spec: 01ARZ3NDEKTSV4RRFFQ69G5FAV.
    value = int("01563E3AB5D3D6764C61EFB99302BD5B", 16)
    assert encode(value) == "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def test_ids_are_prefixed_unique_and_sort_by_time():
    first = new_id("job")
    assert re.fullmatch(r"job_[0-9A-HJKMNP-TV-Z]{26}", first)
    stamp = first[4:14]  # the first 10 characters are the milliseconds
    assert stamp <= ulid()[:10] <= encode(int(time.time() * 1000) << 80)[:10]
    assert len({ulid() for _ in range(1000)}) == 1000
