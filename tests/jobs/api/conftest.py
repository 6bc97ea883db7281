"""Logged-in API clients for the JSON API tests: alice, bob and staff."""

from __future__ import annotations

import pytest
from django.test import Client


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(user) -> Client:
    return client_for(user)


@pytest.fixture
def bob(other_user) -> Client:
    return client_for(other_user)


@pytest.fixture
def staff(staff_user) -> Client:
    return client_for(staff_user)
