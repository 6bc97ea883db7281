"""docs/processors.md's examples work as written: its smallest processor, and its complete
example with its test (the page's own code blocks, run here); then the complete example
runs a whole sheet job, and a second run reuses its answers."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sheets.processors import get_processor, run_rows
from sheets.services import sheet_job_submit
from tests.sheets.factories import make_sheet, run_to_end

DOC = Path(__file__).resolve().parents[3] / "docs" / "processors.md"
MODULE = "myapp_processors_from_docs"


def code_block(first_line: str) -> str:
    """The page's ```python block whose first line is `first_line`."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    [block] = [block for block in blocks if block.partition("\n")[0] == first_line]
    return block


def run_block(first_line: str, name: str) -> dict[str, Any]:
    """Run a block as the module `name` (kept in sys.modules: dataclasses look it up)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(code_block(first_line), str(DOC), "exec"), module.__dict__)  # noqa: S102
    return module.__dict__


SMALLEST = "# myapp/processors.py: every installed app's processors.py is imported at start-up"


def test_the_pages_smallest_processor_shouts_and_fails_empty_cells(registered):
    registered.append("upper")
    try:
        run_block(SMALLEST, f"{MODULE}_smallest")
    finally:
        sys.modules.pop(f"{MODULE}_smallest", None)
    rows = [(1, {"word": "hi"}), (2, {"word": ""})]
    outcomes = run_rows(get_processor("upper"), {}, rows, should_stop=lambda: False)
    assert [(o.outputs, o.error) for o in outcomes] == [
        ({"shouted": "HI"}, ""),
        (None, "empty cell"),
    ]


@pytest.fixture
def geo(registered) -> Iterator[dict[str, Any]]:
    """The page's processor module, registered; unregistered afterwards."""
    registered.append("geo.lookup")
    try:
        yield run_block("# myapp/processors.py", MODULE)
    finally:
        sys.modules.pop(MODULE, None)
        sys.modules.pop(f"{MODULE}_tests", None)


def test_the_pages_processor_passes_the_pages_test(geo, settings):
    tests = run_block("# myapp/tests/test_processors.py", f"{MODULE}_tests")
    functions = [fn for name, fn in tests.items() if name.startswith("test_")]
    assert functions
    for function in functions:
        function(settings)


@pytest.mark.django_db(transaction=True)
def test_the_pages_processor_runs_a_sheet_job_and_its_second_run_reuses_answers(
    geo, settings, user
):
    tests = run_block("# myapp/tests/test_processors.py", f"{MODULE}_tests")
    sheet = make_sheet(user, [["Name", "Address"], ["Home", "1 Main St"], ["Away", "Nowhere"]])
    with tests["FakeGeo"]() as fake:
        settings.GEO_URL = fake.origin
        options = {"address_column": "address"}
        first, _ = sheet_job_submit(
            sheet=sheet, owner=user, processor="geo.lookup", options=options
        )
        first = run_to_end(first)
        second, _ = sheet_job_submit(
            sheet=sheet, owner=user, processor="geo.lookup", options=options
        )
        second = run_to_end(second)
    assert (first.status, first.processed, first.failed) == ("succeeded", 2, 1)
    results = {r.row_number: r for r in first.row_results.all()}
    assert results[1].outputs == {"lat": 51.5, "lon": -0.12}
    assert results[2].error == "address not found: Nowhere"
    reused = {r.row_number: r.reused for r in second.row_results.all()}
    assert reused == {1: True, 2: False}  # a failed row is asked again
