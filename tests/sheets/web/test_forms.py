"""sheets.web.forms: the start form and a processor's options, read from what was posted
into SheetRuns (the run's own check is tested in tests/sheets/test_run.py)."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from sheets.processors import get_processor
from sheets.web.forms import OptionsForm, RunForm, step_options
from tests.sheets.factories import make_sheet

pytestmark = pytest.mark.django_db


def posted(**fields) -> QueryDict:
    data = QueryDict(mutable=True)
    for name, value in fields.items():
        data.setlist(name, value if isinstance(value, list) else [value])
    return data


def test_empty_options_are_left_to_the_processors_defaults():
    clean = get_processor("clean")
    data = posted(opt_case="", opt_email_columns=["", "email"], opt_phone_columns=[""])
    assert OptionsForm(clean, data).options() == {"email_columns": ["email"]}


def test_a_checkbox_counts_when_posted_at_all():
    clean = get_processor("clean")
    assert OptionsForm(clean, posted(opt_detect_columns="")).options() == {"detect_columns": ""}
    assert "detect_columns" not in OptionsForm(clean, posted()).options()


def test_the_form_becomes_the_run_of_the_sheet(user):
    sheet = make_sheet(user, [["name", "email"], ["Ann", "a@example.com"]])
    data = posted(processor="clean", columns=["email"], start_row="1", priority=" HIGH ")
    form = RunForm(data, user=user)
    run = form.run(sheet)
    assert (run.sheet_id, run.processor, run.columns, run.priority) == (
        sheet.pk,
        "clean",
        ["email"],
        "high",
    )
    assert run.check(user)["columns"] == ["email"] and not form.priority_error


@pytest.mark.parametrize(
    ("priority", "error"),
    [
        ("7", "Priority must be high, normal or low (other values are for staff)."),
        ("high", ""),
        ("", ""),
        ("soon", ""),  # not a priority at all: the run's submit says so with the rest
    ],
)
def test_only_staff_choose_an_integer_priority(user, priority, error):
    assert RunForm(posted(priority=priority), user=user).priority_error == error


def test_staff_may_choose_an_integer_priority(staff_user):
    assert RunForm(posted(priority="7"), user=staff_user).priority_error == ""


def test_then_steps_make_a_chain_with_the_first_steps_rows(user):
    sheet = make_sheet(user, [["name"], ["Ann"]])
    data = posted(
        processor="clean",
        row_count="1",
        then_processor=["copy", ""],
        then_columns=[" name ", ""],
        then_options=["", ""],
    )
    form = RunForm(data, user=user)
    assert [step["processor"] for step in form.chosen_steps()] == ["copy"]
    first, then = form.chain(sheet)
    assert then == {
        "processor": "copy",
        "options": {},
        "columns": "name",
        "start_row": "",
        "row_count": "1",
        "row_timeout": "",
        "priority": "normal",
    }
    assert first["processor"] == "clean" and first["columns"] is None


def test_a_step_whose_options_are_not_lines_of_name_value_says_so(user):
    sheet = make_sheet(user, [["name"], ["Ann"]])
    data = posted(processor="clean", then_processor=["copy"], then_options=["sk-pasted-key"])
    form = RunForm(data, user=user)
    assert form.chain(sheet) is None
    [step] = form.chosen_steps()
    assert step["error"] == "options: Write options as NAME=VALUE, one a line (line 1 is not)."


def test_step_options_are_trimmed_and_blank_lines_skipped():
    assert step_options("a = 1\n\n b=two words \n") == {"a": "1", "b": "two words"}


def test_a_typed_secret_is_remembered_by_name_only(user):
    form = RunForm(posted(processor="llm", opt_api_key="sk-secret"), user=user)
    assert form.shown["typed_secrets"] == frozenset({"api_key"})
    assert "sk-secret" not in repr(form.shown)
