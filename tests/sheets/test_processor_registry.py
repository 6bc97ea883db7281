"""The processor registry, option validation and `run_rows` (sheets/processors/base.py)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator

import pytest

from sheets.processors import (
    DEDUPE_KEY,
    Option,
    OptionsError,
    RowError,
    UnknownProcessor,
    all_processors,
    get_processor,
    processor,
    run_rows,
)
from sheets.processors.base import unregister

NEVER = lambda: False  # noqa: E731


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names of throwaway processors a test registers; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)


def rows_of(n: int) -> list[tuple[int, dict[str, str]]]:
    return [(i, {"name": f"row {i}"}) for i in range(1, n + 1)]


# --- the registry ---------------------------------------------------------------


def test_built_in_processors_are_registered_on_import():
    names = {proc.name for proc in all_processors()}
    assert {"llm", "web", "clean"} <= names
    assert get_processor("web").io_bound and get_processor("llm").io_bound
    assert not get_processor("clean").io_bound


def test_unknown_processor_names_the_available_ones():
    with pytest.raises(UnknownProcessor, match="'nope'.*clean.*llm.*web"):
        get_processor("nope")


def test_decorator_registers_a_processor_with_options_and_outputs(registered):
    @processor(
        "test.shout",
        label="Shout",
        description="Upper-cases a column.",
        options=[Option("column", "Column", "str", required=True)],
        outputs=["shouted"],
    )
    def shout(row, options):
        return {"shouted": row[options["column"]].upper()}

    registered.append("test.shout")
    proc = get_processor("test.shout")
    assert proc is shout
    assert (proc.label, proc.description, proc.io_bound) == (
        "Shout",
        "Upper-cases a column.",
        False,
    )
    assert proc.output_columns({"column": "a"}, ["a"]) == ["shouted"]
    assert proc.notice({}) == ""
    assert proc in all_processors()


def test_registering_another_function_under_a_taken_name_is_refused(registered):
    def first(row, options):
        return {}

    def second(row, options):
        return {}

    processor("test.taken")(first)
    registered.append("test.taken")
    assert processor("test.taken")(first).fn is first  # the same function again: a re-import
    with pytest.raises(ValueError, match="'test.taken' is already registered"):
        processor("test.taken")(second)


def test_io_bound_processors_must_be_async(registered):
    with pytest.raises(TypeError, match="async def"):
        processor("test.sync_io", io_bound=True)(lambda row, options: {})


def test_outputs_may_depend_on_the_options(registered):
    proc = processor(
        "test.echo",
        options=[Option("columns", "Columns", "columns")],
        outputs=lambda options, columns: [f"echo_{c}" for c in options["columns"] or columns],
    )(lambda row, options: dict(row))
    registered.append("test.echo")
    assert proc.output_columns({"columns": ["b"]}, ["a", "b"]) == ["echo_b"]
    assert proc.output_columns({"columns": []}, ["a", "b"]) == ["echo_a", "echo_b"]


# --- options ----------------------------------------------------------------------

OPTIONS = [
    Option("name", "Name", "str", required=True),
    Option("note", "Note", "text", default="  keep  "),
    Option("count", "Count", "int", default=3, min=1, max=10),
    Option("ratio", "Ratio", "float", default=0.5, min=0, max=1),
    Option("loud", "Loud", "bool", default=False),
    Option("mode", "Mode", "choice", default="fast", choices=("fast", "slow")),
    Option("token", "Token", "secret", default=""),
    Option("endpoint", "Endpoint", "url", default=lambda: "https://default.example/v1"),
    Option("fields", "Fields", "columns"),
]


@pytest.fixture
def configurable(registered):
    proc = processor("test.options", options=OPTIONS, outputs=["x"])(lambda row, o: {"x": 1})
    registered.append("test.options")
    return proc


def test_options_are_typed_and_defaults_filled(configurable):
    options = configurable.validate_options(
        {"name": " Ada ", "count": "7", "loud": "on", "fields": "Email, city"},
        ["email", "City", "zip"],
    )
    assert options == {
        "name": "Ada",
        "note": "  keep  ",
        "count": 7,
        "ratio": 0.5,
        "loud": True,
        "mode": "fast",
        "token": "",
        "endpoint": "https://default.example/v1",
        "fields": ["email", "City"],
    }


def test_validated_options_validate_again_unchanged(configurable):
    columns = ["email", "city"]
    options = configurable.validate_options({"name": "Ada", "fields": "city"}, columns)
    assert configurable.validate_options(options, columns) == options


def test_every_invalid_option_gets_its_own_message(configurable):
    with pytest.raises(OptionsError) as caught:
        configurable.validate_options(
            {
                "count": "11",
                "ratio": "lots",
                "loud": "maybe",
                "mode": "medium",
                "endpoint": "ftp://files.example",
                "fields": "email, phone, fax",
                "colour": "red",
            },
            ["email", "city"],
        )
    errors = caught.value.errors
    assert errors == {
        "name": "This field is required.",
        "count": "Must be at most 10.",
        "ratio": "Enter a number.",
        "loud": "Enter yes or no.",
        "mode": "Choose one of: fast, slow.",
        "endpoint": "Enter a full http:// or https:// URL.",
        "fields": "Unknown columns: phone, fax. Columns are: email, city.",
        "colour": "Unknown option.",
    }


def test_numbers_must_be_finite_and_whole_for_int_options(configurable):
    with pytest.raises(OptionsError) as caught:
        configurable.validate_options({"name": "x", "count": "2.5", "ratio": "nan"}, [])
    assert caught.value.errors == {"count": "Enter a whole number.", "ratio": "Enter a number."}


def test_option_declarations_are_checked():
    with pytest.raises(ValueError, match="unknown type"):
        Option("x", "X", "date")
    with pytest.raises(ValueError, match="needs choices"):
        Option("x", "X", "choice")


# --- running rows: plain functions ---------------------------------------------------


@pytest.fixture
def picky(registered):
    @processor("test.picky", outputs=["length"])
    def picky(row, options):
        if row["name"] == "row 2":
            raise RowError("row 2 is not welcome")
        if row["name"] == "row 3":
            raise ValueError("cannot measure row 3")
        return {"length": len(row["name"])}

    registered.append("test.picky")
    return picky


def test_sync_rows_run_in_order_and_bad_rows_do_not_stop_the_batch(picky):
    outcomes = run_rows(picky, {}, rows_of(4), should_stop=NEVER)
    assert [(o.number, o.outputs, o.error, o.attempts) for o in outcomes] == [
        (1, {"length": 5}, "", 1),
        (2, None, "row 2 is not welcome", 1),
        (3, None, "ValueError: cannot measure row 3", 1),
        (4, {"length": 5}, "", 1),
    ]
    assert all(o.duration >= 0 for o in outcomes)


def test_sync_rows_stop_between_rows_when_asked(registered):
    done: list[int] = []

    @processor("test.counting", outputs=["n"])
    def counting(row, options):
        done.append(1)
        return {"n": len(done)}

    registered.append("test.counting")
    outcomes = run_rows(counting, {}, rows_of(10), should_stop=lambda: len(done) >= 3)
    assert [o.number for o in outcomes] == [1, 2, 3]


def test_a_row_function_must_return_a_dict(registered):
    proc = processor("test.bad_return")(lambda row, options: ["not", "a", "dict"])
    registered.append("test.bad_return")
    [outcome] = run_rows(proc, {}, rows_of(1), should_stop=NEVER)
    assert outcome.error == "TypeError: the row function returned list, not a dict"


def test_dedupe_key_is_passed_through_for_the_handler(registered):
    proc = processor("test.dedupe", outputs=["duplicate_of"])(
        lambda row, options: {"duplicate_of": "", DEDUPE_KEY: row["name"].lower()}
    )
    registered.append("test.dedupe")
    [outcome] = run_rows(proc, {}, [(1, {"name": "ADA"})], should_stop=NEVER)
    assert outcome.outputs == {"duplicate_of": "", "_dedupe_key": "ada"}


# --- running rows: async functions -------------------------------------------------------


class Probe:
    """What the async test processor saw: rows in flight and sessions."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.started: list[int] = []
        self.sessions_opened = 0
        self.sessions_closed = 0


@pytest.fixture
def probe(registered) -> Probe:
    """An async processor: sleeps a random moment (or the row's `delay`), fails some rows."""
    probe = Probe()

    @processor(
        "test.sleepy",
        options=[Option("concurrency", "At once", "int", default=3)],
        outputs=["doubled"],
    )
    async def sleepy(row, options, session):
        number = int(row["name"].split()[-1])
        probe.started.append(number)
        probe.in_flight += 1
        probe.max_in_flight = max(probe.max_in_flight, probe.in_flight)
        try:
            await asyncio.sleep(float(row.get("delay", 0.02 * random.random())))
        finally:
            probe.in_flight -= 1
        if number % 5 == 0:
            raise RowError(f"{number} is a multiple of five")
        if number == 7:
            raise KeyError("seven")
        return {"doubled": number * 2, "session": session}

    @sleepy.session
    async def open_session(options):
        probe.sessions_opened += 1
        try:
            yield "the session"
        finally:
            probe.sessions_closed += 1

    registered.append("test.sleepy")
    return probe


def sleepy_options(**raw) -> dict:
    return get_processor("test.sleepy").validate_options(raw, ["name"])


def test_async_rows_each_finish_exactly_once_in_any_order(probe):
    proc = get_processor("test.sleepy")
    outcomes = run_rows(proc, sleepy_options(), rows_of(40), should_stop=NEVER)
    assert sorted(o.number for o in outcomes) == list(range(1, 41))
    by_number = {o.number: o for o in outcomes}
    assert by_number[4].outputs == {"doubled": 8, "session": "the session"}
    assert by_number[5].error == "5 is a multiple of five"
    assert by_number[7].error == "KeyError: 'seven'"
    assert (probe.sessions_opened, probe.sessions_closed) == (1, 1)


def test_async_concurrency_comes_from_the_options_or_the_argument(probe):
    proc = get_processor("test.sleepy")
    run_rows(proc, sleepy_options(concurrency="3"), rows_of(30), should_stop=NEVER)
    assert probe.max_in_flight == 3
    probe.max_in_flight = 0
    run_rows(proc, sleepy_options(), rows_of(30), should_stop=NEVER, concurrency=6)
    assert probe.max_in_flight == 6


def test_a_slow_row_times_out_without_holding_up_the_others(probe):
    rows = [(1, {"name": "row 1", "delay": "5"}), (2, {"name": "row 2", "delay": "0.05"})]
    began = time.monotonic()
    outcomes = run_rows(
        get_processor("test.sleepy"), sleepy_options(), rows, should_stop=NEVER, row_timeout=0.3
    )
    assert time.monotonic() - began < 1.5
    errors = {o.number: o.error for o in outcomes}
    assert errors == {1: "timed out after 0.3 s", 2: ""}


def test_stop_cancels_rows_in_flight_and_returns_only_finished_ones(registered):
    hanging_rows: list[int] = []
    cancelled: list[int] = []
    closed = threading.Event()

    @processor("test.hanging", options=[Option("concurrency", "At once", "int", default=4)])
    async def hanging(row, options, session):
        number = int(row["name"].split()[-1])
        if number == 1:
            return {"done": True}
        hanging_rows.append(number)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(number)
            raise
        return {"done": True}

    @hanging.session
    async def session(options):
        yield None
        closed.set()

    registered.append("test.hanging")
    began = time.monotonic()
    outcomes = run_rows(
        hanging, {"concurrency": 4}, rows_of(8), should_stop=lambda: len(hanging_rows) >= 4
    )
    elapsed = time.monotonic() - began
    assert elapsed < 1, f"run_rows took {elapsed:.1f} s to stop"
    assert [o.number for o in outcomes] == [1]
    # row 1's worker went on to row 5; rows 6-8 never started
    assert sorted(cancelled) == sorted(hanging_rows) == [2, 3, 4, 5]
    assert closed.is_set()


def test_stop_before_the_batch_starts_processes_nothing(probe):
    proc = get_processor("test.sleepy")
    assert run_rows(proc, sleepy_options(), rows_of(5), should_stop=lambda: True) == []
    assert probe.started == []


def test_an_empty_batch_is_fine(probe):
    assert run_rows(get_processor("test.sleepy"), sleepy_options(), [], should_stop=NEVER) == []


@pytest.mark.asyncio
async def test_run_rows_works_when_called_inside_an_event_loop(probe):
    proc = get_processor("test.sleepy")
    outcomes = run_rows(proc, sleepy_options(), rows_of(6), should_stop=NEVER)
    assert sorted(o.number for o in outcomes) == [1, 2, 3, 4, 5, 6]
