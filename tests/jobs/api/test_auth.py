"""jobs/api/auth.py and the tokens behind it (jobs/tokens.py, managed with
`manage.py conveyor_token`): API tokens are created once and stored only
hashed, they let a script call /api/ as their user without CSRF, until revoked."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from jobs.models import ApiToken, Job
from jobs.tokens import token_create
from tests.jobs.factories import submit_demo

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def submittable(settings) -> None:
    settings.CONVEYOR_SUBMITTABLE_KINDS = ["demo.count"]


def token_command(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("conveyor_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


def bearer(secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def test_create_prints_the_token_once_and_stores_only_its_digest(user):
    secret, note = token_command("create", "alice", "--name", "nightly import")
    token = ApiToken.objects.get()
    assert secret.startswith("cvy_") and len(secret) > 40
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[:12] and token.name == "nightly import"
    assert token.user == user
    assert secret not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert token.prefix in note and "only now" in note


def test_a_token_lets_a_script_read_and_submit_without_csrf(user, other_user):
    _, secret = token_create(user=user)
    mine = submit_demo(user, n=1)
    theirs = submit_demo(other_user, n=1)
    script = Client(enforce_csrf_checks=True)
    listed = script.get("/api/jobs/", **bearer(secret)).json()
    assert [job["id"] for job in listed["results"]] == [mine.pk]
    assert script.get(f"/api/jobs/{theirs.pk}/", **bearer(secret)).status_code == 404
    created = script.post(
        "/api/jobs/",
        data=json.dumps({"kind": "demo.count", "params": {"n": 2}}),
        content_type="application/json",
        **bearer(secret),
    )
    assert created.status_code == 201
    assert Job.objects.get(pk=created.json()["id"]).owner == user
    cancelled = script.post(f"/api/jobs/{mine.pk}/cancel/", **bearer(secret))
    assert cancelled.json()["status"] == "cancelled"


def test_a_staff_token_sees_every_job(user, staff_user):
    _, secret = token_create(user=staff_user)
    job = submit_demo(user, n=1)
    assert Client().get(f"/api/jobs/{job.pk}/", **bearer(secret)).json()["owner"] == "alice"


def test_revoked_tokens_stop_working(user):
    secret, _ = token_command("create", "alice")
    client = Client()
    assert client.get("/api/jobs/", **bearer(secret)).status_code == 200
    prefix = ApiToken.objects.get().prefix
    out, _ = token_command("revoke", prefix)
    assert prefix in out and "alice" in out
    response = client.get("/api/jobs/", **bearer(secret))
    assert response.status_code == 401 and "revoked" in response.json()["error"]
    with pytest.raises(CommandError, match="No active token"):
        token_command("revoke", prefix)


def test_revoke_accepts_the_whole_token(user):
    _, first = token_create(user=user)
    _, second = token_create(user=user)
    token_command("revoke", second)
    assert Client().get("/api/jobs/", **bearer(first)).status_code == 200
    assert Client().get("/api/jobs/", **bearer(second)).status_code == 401


def test_revoke_refuses_an_ambiguous_prefix(user):
    token_create(user=user)
    token_create(user=user)
    ApiToken.objects.update(prefix="cvy_SAMESAME")
    with pytest.raises(CommandError, match="2 active tokens"):
        token_command("revoke", "cvy_SAMESAME")
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()


@pytest.mark.parametrize(
    "header",
    [
        "Bearer cvy_not-a-real-token",
        "Bearer",
        "Bearer    ",
        "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=",
        "Token cvy_x",
        "Bearer " + "x" * 5000,
        "",
    ],
)
def test_bad_authorization_headers_are_401_even_with_a_session(user, header):
    client = Client()
    client.force_login(user)
    response = client.get("/api/jobs/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert "error" in response.json()


def test_an_inactive_users_token_is_401(user):
    _, secret = token_create(user=user)
    user.is_active = False
    user.save()
    assert Client().get("/api/jobs/", **bearer(secret)).status_code == 401


def test_last_used_is_written_at_most_once_a_minute(user):
    token, secret = token_create(user=user)
    client = Client()
    client.get("/api/jobs/", **bearer(secret))
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    client.get("/api/jobs/", **bearer(secret))
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/jobs/", **bearer(secret))
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


def test_list_shows_prefixes_names_and_state_never_secrets(user):
    secret, _ = token_command("create", "alice", "--name", "ci")
    token_command("create", "alice", "--name", "laptop")
    ApiToken.objects.filter(name="laptop").update(revoked_at=timezone.now())
    out, _ = token_command("list", "alice")
    lines = out.splitlines()
    assert len(lines) == 2
    assert secret not in out and secret[:12] in out
    assert any("active" in line and "ci" in line for line in lines)
    assert any("revoked" in line and "laptop" in line for line in lines)


def test_list_says_when_there_are_no_tokens(user):
    out, _ = token_command("list", "alice")
    assert "no API tokens" in out


def test_commands_refuse_unknown_and_inactive_users(user):
    with pytest.raises(CommandError, match="No user named"):
        token_command("create", "mallory")
    with pytest.raises(CommandError, match="No user named"):
        token_command("list", "mallory")
    user.is_active = False
    user.save()
    with pytest.raises(CommandError, match="inactive"):
        token_command("create", "alice")
    assert not ApiToken.objects.exists()
