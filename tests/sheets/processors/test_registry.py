"""The processor registry: `@processor`, lookups, built-ins (sheets/processors/registry.py)."""

from __future__ import annotations

import pytest

from sheets.processors import (
    Option,
    UnknownProcessor,
    all_processors,
    get_processor,
    processor,
)


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


def test_a_reusable_processor_gets_the_reuse_option_last_unless_it_declares_one(registered):
    async def ask(row, options, session):
        return {}

    plain = processor("test.reusable", reusable=True, options=[Option("n", "N", "int")])(ask)
    own = Option("reuse", "Use the cache", "bool", default=False)
    declared = processor("test.own_reuse", reusable=True, options=[own])(ask)
    registered.extend(["test.reusable", "test.own_reuse"])
    assert [option.name for option in plain.options] == ["n", "reuse"]
    assert plain.validate_options({}, []) == {"n": None, "reuse": True}
    assert declared.options == (own,)
    assert [option.name for option in get_processor("web").options][-1] == "reuse"
    assert [option.name for option in get_processor("llm").options][-1] == "reuse"
