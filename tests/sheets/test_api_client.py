"""The README's typed Python client (httpx), run as printed: submit a sheet job with an
API token, watch it, download its export, against a live server and a real worker
cluster (issue #27)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from jobs.models import Job
from jobs.tokens import token_create
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_client() -> dict:
    """The README's client code, executed into a namespace of its functions."""
    text = README.read_text()
    section = text[text.index("**A typed Python client**") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {"__name__": "readme_client"}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def test_the_readme_client_submits_watches_and_exports(
    live_server, cluster, user, tmp_path, monkeypatch
):
    client = readme_client()
    sheet = make_sheet(user, [["name", "email"], ["Ada", " ADA@example.com "]])
    token = token_create(user=user, name="readme")[1]
    monkeypatch.chdir(tmp_path)
    path = client["main"](live_server.url, token, sheet.pk)  # a real worker runs the job
    job = Job.objects.get(kind="sheets.process", owner=user)
    assert path == Path(f"job{job.pk}.csv") and job.status == Job.Status.SUCCEEDED
    header, row = path.read_text(encoding="utf-8-sig").splitlines()[:2]
    assert header.startswith("name,email,clean_name,clean_email")
    assert row.startswith("Ada, ADA@example.com ,Ada,ada@example.com")


def test_the_readme_client_raises_the_api_error_and_a_bad_token_cannot_export(live_server, user):
    client = readme_client()
    token = token_create(user=user)[1]
    with client["connect"](live_server.url, token) as api:
        with pytest.raises(client["ConveyorError"]) as refused:
            client["submit"](api, 999999)
        assert refused.value.status == 400
        assert "params" in refused.value.fields
    with client["connect"](live_server.url, "cvy_not-a-token") as api:
        with pytest.raises(client["ConveyorError"]) as denied:
            client["export"](api, 1, Path("never.csv"))
        assert denied.value.status == 401
    anonymous = httpx.get(f"{live_server.url}/sheets/jobs/1/export.csv")
    assert anonymous.status_code == 302  # the page's own login redirect, as before
