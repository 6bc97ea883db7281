"""`manage.py conveyor kind ...` (jobs/cli/kinds.py): list, pause, resume, cap."""

from __future__ import annotations

import json

import pytest

from jobs.engine import controls
from jobs.models import KindControl
from tests.jobs.cli.test_verbs import conveyor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_cached_controls():
    controls.forget()
    yield
    controls.forget()


def test_pause_list_and_resume_a_processor(admin):
    paused = conveyor("kind", "pause", "llm", "--reason", "provider degraded", "--user", "operator")
    assert paused.code == 0, paused
    assert paused.out.startswith("llm: paused by operator since ")

    listed = json.loads(conveyor("kind", "list", "--json").out)
    llm = next(row for row in listed if row["name"] == "llm")
    assert (llm["paused"], llm["reason"], llm["kind"]) == (
        True,
        "provider degraded",
        "sheets.process",
    )
    table = conveyor("kind", "list").out
    assert "llm" in table and "provider degraded" in table

    resumed = conveyor("kind", "resume", "llm", "--user", "operator")
    assert resumed.out.strip() == "llm: running; cap -."


def test_cap_and_back_to_the_default(admin):
    assert conveyor("kind", "cap", "tasks.default", "3").out.strip().endswith("cap 3.")
    assert KindControl.objects.get(name="tasks.default").cap == 3
    back = json.loads(conveyor("kind", "cap", "tasks.default", "default", "--json").out)
    assert back["cap"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("kind", "pause", "nope"), "name: unknown kind, queue or processor 'nope'"),
        (("kind", "cap", "llm", "0"), "cap: a whole number from 1 to 10000, or empty"),
        (("kind", "cap", "llm", "lots"), "cap: a whole number from 1 to 10000, or empty"),
    ],
)
def test_bad_input_exits_2_with_one_line(admin, args, message):
    result = conveyor(*args)
    assert result.code == 2 and result.err.strip().startswith(message), result


def test_non_staff_may_not_pause(admin, user):
    result = conveyor("kind", "pause", "llm", "--user", user.username)
    assert (result.code, result.err.strip()) == (
        2,
        "Only staff may pause, resume or cap kinds of work.",
    )
    assert not KindControl.objects.exists()
