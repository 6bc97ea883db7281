"""Login throttling (django-axes): /login/ and /admin/login/ lock a username+address pair
after CONVEYOR_LOGIN_FAILURE_LIMIT failures, refuse even the right password while
locked, and are unlocked by `manage.py axes_reset` or by staff in the admin."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def log_in(client: Client, password: str, path: str = "/login/", username: str = "alice"):
    return client.post(path, {"username": username, "password": password})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail(client: Client, times: int, path: str = "/login/", username: str = "alice") -> None:
    for _ in range(times):
        assert log_in(client, "wrong", path, username).status_code in (200, 429)


def test_right_password_is_refused_after_11_failures(user, settings):
    assert settings.CONVEYOR_LOGIN_FAILURE_LIMIT == 10
    client = Client()
    fail(client, 11)
    response = log_in(client, "alice-password")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert not logged_in(client)


def test_failures_below_the_limit_do_not_lock(user):
    client = Client()
    fail(client, 9)
    assert log_in(client, "alice-password").status_code == 302
    assert logged_in(client)


def test_axes_reset_unlocks(user):
    client = Client()
    fail(client, 11)
    call_command("axes_reset")
    assert log_in(client, "alice-password").status_code == 302
    assert logged_in(client)


def test_lock_is_per_username_and_address(user, other_user):
    fail(Client(), 11)
    client = Client()
    assert log_in(client, "bob-password", username="bob").status_code == 302
    other_address = Client(REMOTE_ADDR="10.1.2.3")
    assert log_in(other_address, "alice-password").status_code == 302


def test_admin_login_is_throttled_and_staff_can_unlock(staff_user):
    client = Client()
    fail(client, 11, "/admin/login/", "operator")
    response = log_in(client, "operator-password", "/admin/login/", "operator")
    assert response.status_code == 429
    assert not logged_in(client)

    helper = Client()
    helper.force_login(staff_user)
    assert helper.get("/admin/axes/accessattempt/").status_code == 200
    attempt = AccessAttempt.objects.get(username="operator")
    deleted = helper.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    response = log_in(client, "operator-password", "/admin/login/", "operator")
    assert response.status_code == 302
    assert logged_in(client)
