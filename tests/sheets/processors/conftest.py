"""Throwaway processors for the tests of the processor package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sheets.processors import unregister


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names of throwaway processors a test registers; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)
