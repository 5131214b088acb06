"""Fixtures for tests that kill and restart real processes. Each test gets a whole
deployment of its own (tests/support/stack.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import TMP
from tests.support.stack import Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)


@pytest.fixture
def make_stack(database: str) -> Iterator[Callable[..., Stack]]:
    """Build an isolated stack; everything it started is stopped after the test."""
    stacks: list[Stack] = []

    def make(name: str, **kwargs: object) -> Stack:
        stack = Stack(name, TMP, dict(os.environ), **kwargs)  # type: ignore[arg-type]
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
