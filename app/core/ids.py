"""Sortable, prefixed identifiers: `job_01JD3...` (a ULID after the prefix)."""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as two characters


def ulid() -> str:
    """26 Crockford base32 characters: 48 bits of milliseconds, 80 random bits
    (130 bits with two leading zeros, read ten bits at a time)."""
    return encode((int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big"))


def encode(value: int) -> str:
    """A 128-bit value as 26 Crockford base32 characters, most significant first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"
