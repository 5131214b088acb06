"""The one source of "now" for the pipeline, so tests can move time instead of waiting.

Everything that stamps a row or compares against a deadline calls `utcnow()`;
`use_clock()` swaps the source (tests pass a function returning the time they
choose). Measuring elapsed time stays with `time.monotonic()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime


def _system() -> datetime:
    return datetime.now(UTC)


_source: list[Callable[[], datetime]] = [_system]


def utcnow() -> datetime:
    return _source[0]()


@contextmanager
def use_clock(source: Callable[[], datetime]) -> Iterator[None]:
    previous = _source[0]
    _source[0] = source
    try:
        yield
    finally:
        _source[0] = previous


__all__ = ["use_clock", "utcnow"]
