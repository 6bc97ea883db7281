"""The registry of job kinds: what a module declares to have work run in the background.

A kind is a name, a handler taking a `JobContext`, and its limits. Register one with
the `@job_kind` decorator in an installed app's `kinds` module, which is imported at
start-up (`autodiscover_modules("kinds")`); `jobs/kinds.py` is a worked example.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings

from jobs.engine.errors import UnknownKind
from jobs.engine.redact import is_secret_name

if TYPE_CHECKING:
    from jobs.models import Job

log = logging.getLogger(__name__)

# A handler is called with the job's `JobContext` (jobs.engine.context). The registry
# does not name that type: the context sits above it (it reads its kind's limits and
# asks dispatch, which reads the kinds' caps), and a name here would close a circle.
Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    label: str = ""
    concurrency: int | None = None
    time_limit: float | None = None
    max_attempts: int | None = None
    retry_failed_rows: Callable[[Job], Any] | None = None
    validate_params: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None
    entity_key_for: Callable[[dict[str, Any]], str] | None = None
    label_for: Callable[[dict[str, Any]], str] | None = None
    total_for: Callable[[dict[str, Any]], int | None] | None = None
    resumable: bool = True
    time_limit_setting: str = ""
    on_end: Callable[[int, dict[str, Any] | None], Any] | None = None
    subkind_for: Callable[[dict[str, Any]], str] | None = None
    subkinds: Callable[[], list[str]] | None = None
    search_params: tuple[str, ...] = ()

    def clean_params(
        self, params: dict[str, Any], owner: Any, after: list[int] | None = None
    ) -> dict[str, Any]:
        """Params checked by the kind (raises ValueError with a user-facing message).
        `after`: the jobs the submission waits for, given to a validator that takes them
        (a sheet run may use the columns an earlier step will write)."""
        if not isinstance(params, dict):
            raise ValueError("params must be a JSON object")
        if self.validate_params is None:
            return params
        if after and "after" in inspect.signature(self.validate_params).parameters:
            return self.validate_params(params, owner, after=after)
        return self.validate_params(params, owner)

    @property
    def supports_failed_rows_retry(self) -> bool:
        return self.retry_failed_rows is not None


_registry: dict[str, JobKind] = {}


def searchable_params() -> dict[str, list[str]]:
    """Each param path users may search by, with the kinds that declare it."""
    found: dict[str, list[str]] = {}
    for kind in _registry.values():
        for path in kind.search_params:
            found.setdefault(path, []).append(kind.name)
    return found


def job_kind(
    name: str,
    *,
    label: str = "",
    concurrency: int | None = None,
    time_limit: float | None = None,
    max_attempts: int | None = None,
    retry_failed_rows: Callable[[Job], Any] | None = None,
    validate_params: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    entity_key_for: Callable[[dict[str, Any]], str] | None = None,
    label_for: Callable[[dict[str, Any]], str] | None = None,
    total_for: Callable[[dict[str, Any]], int | None] | None = None,
    resumable: bool = True,
    time_limit_setting: str = "",
    on_end: Callable[[int, dict[str, Any] | None], Any] | None = None,
    subkind_for: Callable[[dict[str, Any]], str] | None = None,
    subkinds: Callable[[], list[str]] | None = None,
    search_params: tuple[str, ...] = (),
) -> Callable[[H], H]:
    """Register `handler(ctx)` as the job kind `name`.

    concurrency: at most this many jobs of the kind run at once (None: no cap).
    time_limit: default seconds of running time per job (None: no limit).
    max_attempts: consecutive failed attempts (transient errors or lost workers,
        without progress in between) before the job fails.
    retry_failed_rows: `prepare(job)` called inside the retry transaction to set the
        job up to redo its failed units and do any units it never reached (a job
        cancelled midway must not end Succeeded over them); returns the fields to set,
        a `message` saying what it will do among them; enables "retry failed rows".
    validate_params: `validate(params, owner) -> params` for submissions from users
        (API, CLI, pages); raises ValueError with a message the user sees.
    entity_key_for, label_for: derive a job's entity key (what it works on, e.g.
        "sheet:12", so that entity's page finds it) and its label from its params,
        when the submitter gives none.
    total_for: the job's total units from its params, when known before it runs: the
        progress bar has its scale from the start and the handler need not commit it.
    resumable: False for a handler that cannot resume from its cursor (a Django task
        runs its function from the start each time): its checkpoints never end the
        slice for fairness nor yield to a higher-priority job; it stops only when
        cancelled or paused, at its time limit, or when its worker stops. Its
        worker's crash restarts it from the beginning, only as often as
        `max_attempts` allows.
    time_limit_setting: where `time_limit` comes from (a setting's name), named in the
        error of a job that runs past it.
    on_end: `on_end(job_id, fields)` after a job of the kind ended (succeeded, failed or
        cancelled) by its run, a force stop, recovery or a cancel while no worker held
        it, once that is committed, in the
        process that ended it, with the fields the end wrote (None from recovery). The
        Django Tasks backend sends `task_finished` from it.
    subkind_for, subkinds: what a job of the kind runs, from its params (a sheet job:
        its processor, "llm"), stored on the job at submit (`Job.subkind`), and every
        name it may return: operators pause and cap that work by the name alone
        (`conveyor kind pause llm`, `jobs.engine.controls`).
    search_params: the params users may search jobs by (`processor=llm`,
        `options.model=gpt-4o-mini`: dotted paths into the params), on the dashboard, the
        API's `q` and the admin. Never a secret: a path naming one is refused here.
    """
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    secret = [path for path in search_params if any(map(is_secret_name, path.split(".")))]
    if secret:
        raise ValueError(f"search_params may not name secrets: {', '.join(secret)}")

    def register(handler: H) -> H:
        _registry[name] = JobKind(
            name=name,
            handler=handler,
            label=label or name,
            concurrency=concurrency,
            time_limit=time_limit,
            max_attempts=max_attempts,
            retry_failed_rows=retry_failed_rows,
            validate_params=validate_params,
            entity_key_for=entity_key_for,
            label_for=label_for,
            total_for=total_for,
            resumable=resumable,
            time_limit_setting=time_limit_setting,
            on_end=on_end,
            subkind_for=subkind_for,
            subkinds=subkinds,
            search_params=search_params,
        )
        return handler

    return register


def get_kind(name: str) -> JobKind:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownKind(
            f"Unknown job kind {name!r}: is the app that registers it installed here?"
        ) from None


def job_ended(name: str | None, job_id: int, fields: dict[str, Any] | None = None) -> None:
    """Call the kind's `on_end` hook, if any; its errors are logged, never raised (the
    job's outcome is committed already, and the worker must go on)."""
    kind = _registry.get(name or "")
    if kind is None or kind.on_end is None:
        return
    try:
        kind.on_end(job_id, fields)
    except Exception:  # noqa: BLE001 - a hook's failure is not the job's
        log.exception("the on_end hook of kind %s failed for job %s", name, job_id)


def all_kinds() -> list[JobKind]:
    return sorted(_registry.values(), key=lambda kind: kind.name)


def capped_kinds() -> dict[str, int]:
    return {k.name: k.concurrency for k in _registry.values() if k.concurrency}


def subkind_names() -> dict[str, str]:
    """Every sub-kind the registered kinds declare, with the kind it belongs to."""
    names: dict[str, str] = {}
    for kind in all_kinds():
        for name in kind.subkinds() if kind.subkinds else ():
            names.setdefault(name, kind.name)
    return names


def submittable_kinds() -> list[str]:
    """Kinds users may start through the API and CLI (operators choose them)."""
    return [name for name in settings.CONVEYOR_SUBMITTABLE_KINDS if name in _registry]
