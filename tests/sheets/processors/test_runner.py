"""The row runner: plain rows in order, async rows concurrently with a session, row
errors, timeouts and stops (sheets/processors/runner.py)."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from sheets.processors import DEDUPE_KEY, Option, RowError, get_processor, processor, run_rows

NEVER = lambda: False  # noqa: E731


def rows_of(n: int) -> list[tuple[int, dict[str, str]]]:
    return [(i, {"name": f"row {i}"}) for i in range(1, n + 1)]


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
