"""Security headers: HSTS follows BEHIND_TLS_PROXY / SECURE_COOKIES, and every page
carries the Content-Security-Policy (tests/browser/test_csp.py checks it in Chromium)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.test import Client

from tests.conftest import subprocess_env
from tests.support.processes import ROOT

HSTS_SETTINGS = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS)"
)


def hsts_settings(**env: str) -> str:
    env = {"BEHIND_TLS_PROXY": "", "SECURE_COOKIES": "", **env}
    done = subprocess.run(
        [sys.executable, "-c", HSTS_SETTINGS],
        cwd=ROOT,
        env={**subprocess_env(**env), "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.django_db
def test_hsts_is_on_only_when_served_over_tls():
    assert hsts_settings() == "0 False"
    assert hsts_settings(BEHIND_TLS_PROXY="true") == "31536000 False"
    assert hsts_settings(SECURE_COOKIES="true") == "31536000 False"
    assert hsts_settings(SECURE_COOKIES="1", SECURE_HSTS_INCLUDE_SUBDOMAINS="1") == "31536000 True"


@pytest.mark.django_db
def test_https_responses_carry_hsts_when_enabled(settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    response = Client().get("/login/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.django_db
def test_pages_carry_a_csp_without_inline_scripts():
    policy = Client().get("/login/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
