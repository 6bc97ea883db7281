"""The job table's hand-written statements, for `jobs.engine.transitions` only.

A worker's claim, progress and release and a submit's INSERT run once or more per job;
building them with the ORM cost more CPU than running them (bench engine). Each is
compiled once per database vendor and shape, then run with fresh parameters; every
UPDATE ends in `RETURNING` (PostgreSQL, SQLite >= 3.35) so one statement both applies
the transition's condition and reads what the caller needs next. The state rules
(which statuses a transition leaves, whose lease it needs) stay in transitions.py.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from jobs.engine.journal import CHANNEL, Event, event_of_inserted_job_sql
from jobs.models import Job, KindControl

Status = Job.Status


def column(name: str) -> str:
    return connection.ops.quote_name(Job._meta.get_field(name).column)


def prep(name: str, value: Any) -> Any:
    """`value` of the field `name` as the database takes it."""
    return Job._meta.get_field(name).get_db_prep_save(value, connection)


# -- updates ------------------------------------------------------------------------------


def update_returning(rows: QuerySet[Job], fields: dict[str, Any], returning: list[str]):
    """`rows.update(**fields)` that also returns `returning` of each updated row, in one
    statement. Returned values are raw database values: ask for plain columns only."""
    fields.setdefault("updated_at", timezone.now())
    query = rows.query.chain(UpdateQuery)
    query.add_update_values(fields)
    sql, params = query.get_compiler(rows.db).as_sql()
    columns = ", ".join(column(name) for name in returning)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {columns}", params)
        return cursor.fetchall()


@functools.cache
def _one_row_update(vendor: str, sets: tuple[str, ...], where: str, returning: str) -> str:
    assignments = ", ".join(f"{column(name)} = %s" for name in sets)
    table = connection.ops.quote_name(Job._meta.db_table)
    return f"UPDATE {table} SET {assignments} WHERE {where} RETURNING {returning}"


def update_job(
    job_id: int,
    fields: dict[str, Any],
    returning: list[str],
    *,
    owner: str | None = None,
    statuses: tuple[str, ...] | None = None,
) -> list[tuple]:
    """UPDATE one job (held by `owner`, in one of `statuses`) RETURNING columns."""
    fields.setdefault("updated_at", timezone.now())
    where, params = f"{column('id')} = %s", [job_id]
    if owner is not None:
        where += f" AND {column('lease_owner')} = %s"
        params.append(owner)
    if statuses:
        where += f" AND {column('status')} IN ({', '.join(['%s'] * len(statuses))})"
        params += list(statuses)
    columns = ", ".join(column(name) for name in returning)
    sql = _one_row_update(connection.vendor, tuple(fields), where, columns)
    values = [prep(name, value) for name, value in fields.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, values + params)
        return cursor.fetchall()


# -- the claim ----------------------------------------------------------------------------


@functools.cache
def _claim_sql(vendor: str, statuses: tuple[str, ...]) -> str:
    """The claim, as `Job.objects.claimable()` means it, returning the whole row."""
    c = column
    table = connection.ops.quote_name(Job._meta.db_table)
    columns = ", ".join(c(field.name) for field in Job._meta.concrete_fields)
    return (
        f"UPDATE {table} SET {c('status')} = %s, {c('lease_owner')} = %s, "
        f"{c('lease_expires_at')} = %s, {c('heartbeat_at')} = %s, {c('dispatched_at')} = NULL, "
        f"{c('run_after')} = NULL, {c('started_at')} = COALESCE({c('started_at')}, %s), "
        f"{c('updated_at')} = %s "
        f"WHERE {c('id')} = %s AND {c('status')} IN ({', '.join(['%s'] * len(statuses))}) "
        f"AND {c('lease_owner')} = '' AND {c('upstream_pending')} = 0 "
        f"AND ({c('run_after')} IS NULL OR {c('run_after')} <= %s) AND NOT {_held_back_sql()} "
        f"RETURNING {columns}"
    )


def _held_back_sql() -> str:
    """`jobs.models.held_back_condition` for the claim: no operator paused its kind or
    sub-kind (a look-up by the controls' unique name)."""
    quote = connection.ops.quote_name
    controls = quote(KindControl._meta.db_table)
    name, table = quote("name"), quote(Job._meta.db_table)
    return (
        f"EXISTS (SELECT 1 FROM {controls} WHERE {quote('paused_at')} IS NOT NULL "
        f"AND {name} <> '' AND ({name} = {table}.{column('kind')} "
        f"OR {name} = {table}.{column('subkind')}))"
    )


@functools.cache
def _row_converters(vendor: str) -> list[tuple[Any, list]]:
    """Each column's converters from the database's values to Python's (what a
    queryset applies: SQLite's text datetimes, JSON), looked up once."""
    converters = []
    for field in Job._meta.concrete_fields:
        col = field.get_col(Job._meta.db_table)
        found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        converters.append((col, found))
    return converters


def _job_from_row(row: tuple) -> Job:
    values = []
    for value, (col, converters) in zip(row, _row_converters(connection.vendor), strict=True):
        for convert in converters:
            value = convert(value, col, connection)
        values.append(value)
    return Job.from_db(connection.alias, None, values)


def claim_rows(
    job_id: int, worker: str, statuses: tuple[str, ...], now: datetime, lease_expires: datetime
) -> list[Job]:
    """UPDATE ... RETURNING of a claim: the job's whole row comes back in one statement
    (built into a Job here: `Job.objects.raw` cost a third of the claim's time)."""
    at = prep("updated_at", now)
    params = [Status.RUNNING, worker, prep("lease_expires_at", lease_expires), at, at, at]
    params += [job_id, *statuses, at]
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(connection.vendor, statuses), params)
        return [_job_from_row(row) for row in cursor.fetchall()]


# -- inserts ------------------------------------------------------------------------------


def insert_one(job: Job) -> None:
    """One job's INSERT, its `turn` (the owner's active jobs) counted by the statement
    and returned with its id. Compiled once: the ORM compiles the statement on every
    save, which was half the time of a submit (bench engine)."""
    sql, fields = _insert_sql(connection.vendor, job.owner_id is not None)
    with connection.cursor() as cursor:
        cursor.execute(sql, _insert_params(job, fields))
        job.pk, job.turn = cursor.fetchone()
    job._state.adding, job._state.db = False, connection.alias


def insert_one_with_event(job: Job, capacity: tuple[str, list], event: Event) -> tuple[bool, int]:
    """PostgreSQL: one job's INSERT with its `event` (its job id is the new job's) and
    announcement, in one statement. `capacity`: see `transitions.create_in_one_statement`.
    Returns (marked dispatched, free workers)."""
    insert, fields = _insert_sql(connection.vendor, job.owner_id is not None, True)
    cap_sql, cap_params = capacity
    sql = (
        f"WITH cap AS ({cap_sql}), job AS ({insert}), "
        f"event AS ({event_of_inserted_job_sql('job')}) "
        f"SELECT job.id, job.turn, job.dispatched_at IS NOT NULL, cap.free, "
        f"pg_notify(%s, job.id::text) FROM job, cap"
    )
    event_params = event.values(connection)[1:]
    params = [*cap_params, *_insert_params(job, fields), *event_params, CHANNEL]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        job.pk, job.turn, dispatched, free, _ = cursor.fetchone()
    job._state.adding, job._state.db = False, connection.alias
    return dispatched, free


def _insert_params(job: Job, fields: list) -> list:
    """The parameters of `_insert_sql`: the job's values, then its turn's count."""
    values = [field.get_db_prep_save(field.pre_save(job, True), connection) for field in fields]
    owner = [job.owner_id] if job.owner_id is not None else []
    return [*values, *owner, *Job.ACTIVE]


@functools.cache
def _insert_sql(vendor: str, owned: bool, dispatch_if_free: bool = False) -> tuple[str, list]:
    """A job's INSERT ... RETURNING id, turn. `dispatch_if_free`: inside a statement
    with a `cap` CTE, `dispatched_at` is set only if `cap.beyond` > 0."""
    quote = connection.ops.quote_name
    owner = quote("owner_id") + (" = %s" if owned else " IS NULL")
    statuses = ", ".join(["%s"] * len(Job.ACTIVE))
    turn = (
        f"(SELECT COUNT(*) FROM {quote(Job._meta.db_table)} "
        f"WHERE {owner} AND {quote('status')} IN ({statuses}))"
    )
    columns = [
        field
        for field in Job._meta.concrete_fields
        if not field.primary_key and field.attname != "turn"
    ]
    names = ", ".join(quote(field.column) for field in [*columns, Job._meta.get_field("turn")])
    values = [
        "CASE WHEN (SELECT beyond FROM cap) > 0 THEN %s END"
        if dispatch_if_free and field.attname == "dispatched_at"
        else "%s"
        for field in columns
    ]
    returning = f"{quote('id')}, {quote('turn')}"
    if dispatch_if_free:
        returning += f", {quote('dispatched_at')}"
    sql = (
        f"INSERT INTO {quote(Job._meta.db_table)} ({names}) "
        f"VALUES ({', '.join([*values, turn])}) RETURNING {returning}"
    )
    return sql, columns
