"""Fixtures of the CLI tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def admin(staff_user):
    return staff_user
