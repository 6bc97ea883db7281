"""The forms of a sheet's page: the start form (a run and its "then run …" steps) and a
processor's options. They read what was posted and turn it into `SheetRun`s, whose
`check()` is the one validation of pages, API and CLI; what the user typed is kept to
show the form again (never a secret).
"""

from __future__ import annotations

from typing import Any

from django import forms

from jobs.models import parse_priority
from jobs.public import priority_for
from sheets.models import Sheet
from sheets.processors import all_processors, get_processor
from sheets.run import SheetParamsError, SheetRun

THEN_STEPS = 2  # "then run …" steps the start form offers after the first


class ValuesField(forms.Field):
    """Every value posted under the field's name (a multiple select, repeated inputs)."""

    widget = forms.SelectMultiple  # reads QueryDict.getlist

    def to_python(self, value: Any) -> list[str]:
        return [str(item) for item in value or []]


def secret_names() -> set[str]:
    """Names of the secret options of every processor (the "then run" steps' options are
    typed as text, for any processor)."""
    return {o.name for p in all_processors() for o in p.options if o.type == "secret"}


class OptionsForm(forms.Form):
    """A processor's options as posted (`opt_NAME`). An empty field is left out, so the
    processor's default applies; a checkbox counts when posted at all; the processor
    checks the values (`SheetRun.check`)."""

    def __init__(self, processor, data) -> None:
        super().__init__(data)
        self.processor = processor
        for option in processor.options:
            if option.type == "columns":
                field: forms.Field = ValuesField(required=False)
            elif option.type == "bool":
                field = forms.Field(required=False)  # None when not posted
            else:
                field = forms.CharField(required=False, strip=False)
            self.fields[f"opt_{option.name}"] = field

    def options(self) -> dict[str, Any]:
        self.is_valid()  # every field is optional and kept as typed: nothing to refuse
        options: dict[str, Any] = {}
        for option in self.processor.options:
            value = self.cleaned_data[f"opt_{option.name}"]
            if option.type == "columns":
                value = [column for column in value if column]
            if value not in (None, "", []) or option.type == "bool" and value is not None:
                options[option.name] = value
        return options


def step_options(text: str) -> dict[str, str]:
    """A "then run" step's options, NAME=VALUE lines (the processor checks the values);
    raises SheetParamsError."""
    options: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():  # the line is not repeated: it may be a pasted key
            raise SheetParamsError(
                {"options": f"Write options as NAME=VALUE, one a line (line {number} is not)."}
            )
        options[name.strip()] = value.strip()
    return options


class RunForm(forms.Form):
    """The start form of a sheet's page (also its trial and prompt preview, and the run
    form of a sheet being imported). Only the priority is refused here, for the user who
    posts it: high, normal or low; integers for staff only (`priority_for`, the rule of
    the API and the CLI); the rest is checked by the run."""

    processor = forms.CharField(required=False, strip=False)
    columns = ValuesField(required=False)
    start_row = forms.CharField(required=False, strip=False)
    row_count = forms.CharField(required=False, strip=False)
    row_timeout = forms.CharField(required=False, strip=False)
    priority = forms.CharField(required=False)
    then_processor = ValuesField(required=False)
    then_columns = ValuesField(required=False)
    then_options = ValuesField(required=False)

    def __init__(self, data, *, user) -> None:
        super().__init__(data)
        self.user = user
        self.is_valid()
        self.shown = self._shown()

    def clean_priority(self) -> str:
        value = self.cleaned_data["priority"].lower() or "normal"
        try:
            parse_priority(value)
        except ValueError:
            return value  # no priority at all: the run says so, with the form's other errors
        try:
            priority_for(self.user, value)
        except ValueError as exc:
            raise forms.ValidationError(f"Priority {exc}.") from None
        return value

    @property
    def priority_error(self) -> str:
        return self.errors["priority"][0] if "priority" in self.errors else ""

    def _shown(self) -> dict[str, Any]:
        """The form's values as the page shows them again (`detail.render_sheet`)."""
        data = self.cleaned_data
        return {
            "processor": data["processor"],
            "columns": data["columns"],
            "start_row": data["start_row"],
            "row_count": data["row_count"],
            "row_timeout": data["row_timeout"],
            "priority": (self.data.get("priority") or "").strip().lower() or "normal",
            "then_steps": self._steps(),
            # Secrets typed in the form: never shown again, the page asks for them instead.
            "typed_secrets": frozenset(
                name for name in secret_names() if (self.data.get(f"opt_{name}") or "").strip()
            ),
        }

    def _steps(self) -> list[dict[str, str]]:
        """The "then run …" steps as typed (for the chain, and to show them again)."""
        names, columns, options = (
            self.cleaned_data[f"then_{field}"] for field in ("processor", "columns", "options")
        )
        return [
            {
                "processor": name.strip(),
                "columns": (columns[index] if index < len(columns) else "").strip(),
                "options": options[index] if index < len(options) else "",
                "error": "",
            }
            for index, name in enumerate(names[:THEN_STEPS])
        ]

    def chosen_steps(self) -> list[dict[str, str]]:
        """The "then run" steps given a processor (the others are left blank)."""
        return [step for step in self.shown["then_steps"] if step["processor"]]

    def run(self, sheet: Sheet) -> SheetRun:
        """The form's run on `sheet` (raises UnknownProcessor); its options are kept to
        show the form again."""
        shown = self.shown
        processor = get_processor(shown["processor"])
        shown["options"] = OptionsForm(processor, self.data).options()
        return SheetRun(
            sheet_id=sheet.pk,
            processor=shown["processor"],
            options=shown["options"],
            columns=shown["columns"] or None,
            start_row=shown["start_row"],
            row_count=shown["row_count"],
            row_timeout=shown["row_timeout"],
            priority=shown["priority"],
        )

    def chain(self, sheet: Sheet) -> list[dict[str, Any]] | None:
        """The run and its "then run" steps (the fields of each SheetRun but the sheet),
        for `sheet_chain_submit`; raises UnknownProcessor for the first. None when a
        step's options are not NAME=VALUE lines: that step's `error` says so."""
        first = self.run(sheet)
        common = {
            "start_row": first.start_row,
            "row_count": first.row_count,
            "row_timeout": first.row_timeout,
            "priority": first.priority,
        }
        steps = [{"processor": first.processor, "options": first.options, "columns": first.columns}]
        for step in self.chosen_steps():
            try:
                options = step_options(step["options"])
            except SheetParamsError as exc:
                step["error"] = str(exc)
                return None
            steps.append(
                {"processor": step["processor"], "options": options, "columns": step["columns"]}
            )
        return [{**step, "columns": step["columns"] or None, **common} for step in steps]
