"""The processor registry: `@processor` turns a row function into a named `Processor`
that sheet jobs, pages, the API and the CLI find by name (`get_processor`).

How to write one: docs/processors.md. The built-ins (`builtins/`) register on the
registry's first use, so processes that never run a row never load their libraries.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sheets.processors.options import REUSE_OPTION, Option, validate_options

RowFunction = Callable[..., Any]
SessionFactory = Callable[[dict[str, Any]], AbstractAsyncContextManager[Any]]
Validator = Callable[[dict[str, Any], list[str]], dict[str, Any]]
Outputs = Sequence[str] | Callable[[dict[str, Any], list[str]], list[str]]


class UnknownProcessor(LookupError):
    """No processor has this name; the message lists the ones that do."""


@dataclass(eq=False)
class Processor:
    """A registered processor. Create with `@processor(...)`, not directly."""

    name: str
    label: str
    description: str
    options: tuple[Option, ...]
    io_bound: bool
    fn: RowFunction
    outputs: Outputs = ()
    validator: Validator | None = None
    notice_text: str | Callable[[dict[str, Any]], str] = ""
    reusable: bool = False
    session_factory: SessionFactory | None = field(default=None, repr=False)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def validate_options(self, raw: dict[str, Any], input_columns: list[str]) -> dict[str, Any]:
        """Typed options with defaults filled in; raises `OptionsError` listing every problem."""
        values = validate_options(self.options, raw, input_columns)
        return self.validator(values, input_columns) if self.validator else values

    def output_columns(self, options: dict[str, Any], input_columns: list[str]) -> list[str]:
        if callable(self.outputs):
            return list(self.outputs(options, input_columns))
        return list(self.outputs)

    def notice(self, options: dict[str, Any]) -> str:
        """Text to show on the options form (setup help, what will happen); may be ""."""
        return self.notice_text(options) if callable(self.notice_text) else self.notice_text

    def session(self, factory: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        """Decorator: `factory(options)` yields the per-batch session of an async processor.

        An async generator function (set up, `yield` the session, clean up) or a
        function returning an async context manager.
        """
        if inspect.isasyncgenfunction(factory):
            self.session_factory = asynccontextmanager(factory)
        else:
            self.session_factory = factory
        return factory

    def open_session(self, options: dict[str, Any]) -> AbstractAsyncContextManager[Any]:
        if self.session_factory is None:
            return nullcontext()
        return self.session_factory(options)


_registry: dict[str, Processor] = {}
BUILT_INS = (
    "sheets.processors.builtins.clean",
    "sheets.processors.builtins.copy",
    "sheets.processors.builtins.llm",
    "sheets.processors.builtins.web",
)
_built_ins_loaded = False


def _load_built_ins() -> None:
    """Import the built-in processors on first use rather than at start-up.

    Their libraries (httpx, limits, phonenumbers, selectolax: ~30 MB) would otherwise
    sit in every process of a cluster, and its sentinel, monitor and pusher never run
    a row (bench llm: cluster RSS). By name, like `autodiscover_modules`.
    """
    global _built_ins_loaded
    if not _built_ins_loaded:
        _built_ins_loaded = True
        for module in BUILT_INS:
            importlib.import_module(module)


def processor(
    name: str,
    *,
    label: str = "",
    description: str = "",
    options: Iterable[Option] = (),
    outputs: Outputs = (),
    io_bound: bool | None = None,
    validate: Validator | None = None,
    notice: str | Callable[[dict[str, Any]], str] = "",
    session: Callable[[dict[str, Any]], Any] | None = None,
    reusable: bool = False,
) -> Callable[[RowFunction], Processor]:
    """Register a row function as the processor `name`; returns the `Processor`.

    outputs: the output column names, or `outputs(options, input_columns)`.
    io_bound: defaults to whether the row function is `async def` (which is required
        for io_bound processors: they run concurrently on an event loop).
    validate: `validate(options, input_columns)` after per-option parsing; returns the
        final options (it may fill defaults that depend on the columns) or raises
        `OptionsError`.
    notice: text (or `notice(options)`) for the options form.
    session: the per-batch session factory; same as decorating one with `@<proc>.session`.
    reusable: a row's answer depends only on its inputs and the options, so a row the
        owner already had answered (same inputs, processor and options, secrets aside)
        takes that answer without a request, unless the `reuse` option is off (added
        last to the options unless declared).
    """

    def register(fn: RowFunction) -> Processor:
        _load_built_ins()  # a name clash with a built-in is found now, not on first use
        is_async = inspect.iscoroutinefunction(fn)
        if io_bound and not is_async:
            raise TypeError(f"processor {name!r}: an io_bound row function must be async def")
        if name in _registry and _qualified(_registry[name].fn) != _qualified(fn):
            raise ValueError(f"processor {name!r} is already registered")
        declared = tuple(options)
        if reusable and REUSE_OPTION.name not in {option.name for option in declared}:
            declared += (REUSE_OPTION,)
        proc = Processor(
            name=name,
            label=label or name,
            description=description,
            options=declared,
            io_bound=is_async if io_bound is None else io_bound,
            fn=fn,
            outputs=outputs,
            validator=validate,
            notice_text=notice,
            reusable=reusable,
        )
        if session is not None:
            proc.session(session)
        _registry[name] = proc
        return proc

    return register


def _qualified(fn: RowFunction) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def get_processor(name: str) -> Processor:
    _load_built_ins()
    try:
        return _registry[name]
    except KeyError:
        available = ", ".join(sorted(_registry)) or "none"
        raise UnknownProcessor(
            f"Unknown processor {name!r}. Available processors: {available}."
        ) from None


def all_processors() -> list[Processor]:
    _load_built_ins()
    return sorted(_registry.values(), key=lambda proc: proc.label.casefold())


def unregister(name: str) -> None:
    """Remove a processor (for tests that register throwaway ones)."""
    _registry.pop(name, None)
