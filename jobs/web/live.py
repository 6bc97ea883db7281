"""How changes reach pages: one relay per web process turns committed job changes into
rendered HTML fragments and sends them to channel-layer groups.

The relay wakes on PostgreSQL `LISTEN` (workers `NOTIFY` inside their transactions)
or, on SQLite, reads the `JobChange` feed when `PRAGMA data_version` (checked every
CONVEYOR_RELAY_POLL_SECONDS) says something was committed. For each
changed job it reads the committed row once, renders its fragments once and sends
them to the groups allowed to see them: `job-<id>`, the owner's `user-<id>`, the
owner's entity group, `staff`, and its batch's `batch-<id>` (the batch's one progress,
rendered once per batch however many of its jobs changed). New notifications become toasts,
marked shown when a page of their user is open in this process (the others are listed by
the user's next page, "while you were away": jobs/web/context_processors.py). The consumers
(jobs/consumers.py) only forward what arrives in their groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, connections
from django.db.models import Max
from django.template.loader import render_to_string

from jobs import extensions, selectors
from jobs.engine.journal import CHANNEL
from jobs.engine.services import notifications_mark_shown
from jobs.models import Batch, Job, JobChange, Notification

log = logging.getLogger(__name__)

WORKERS_WATCH_SECONDS = 2.0  # how often the relay checks that some worker is alive

STAFF_ROWS_GROUP = "rows-staff"
Fragment = tuple[str, str]  # (group, html)


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def user_group(user_id: int) -> str:
    """Every page of the user: running-jobs badge, unread count, toasts."""
    return f"user-{user_id}"


def rows_group(user_id: int) -> str:
    """Pages listing the user's jobs (dashboard, home)."""
    return f"rows-{user_id}"


def batch_group(batch_id: int) -> str:
    return f"batch-{batch_id}"


def entity_group(owner_id: int | None, entity_key: str) -> str:
    digest = hashlib.sha256(entity_key.encode()).hexdigest()[:24]
    return f"entity-{owner_id or 0}-{digest}"


# -- rendering (sync, in the relay's thread) -----------------------------------


def render_badges(user_id: int) -> str:
    return render_to_string(
        "jobs/_badges.html",
        {
            "nav_running_count": selectors.running_count(user_id),
            "nav_unread_count": selectors.unread_count(user_id),
            "oob": True,
        },
    )


def job_page_fragment(job: Job) -> str:
    """The job's own page: the live panel and the timeline."""
    detail = render_to_string("jobs/job_detail.html#live", {"job": job, "oob": True})
    context = {"job": job, "events": selectors.recent_events(job), "oob": True}
    return detail + render_to_string("jobs/job_detail.html#timeline", context)


ENTITY_LIVE_ID = "current-job-live"


def entity_fragment(job: Job) -> str:
    """The live panel of an entity's page (e.g. a sheet), whichever job is its latest,
    with what the job's kind adds for that page (e.g. a sheet's results signal)."""
    context = {"job": job, "oob": True, "live_id": ENTITY_LIVE_ID}
    html = render_to_string("jobs/job_detail.html#live", context)
    return html + extensions.entity_fragment(job)


def job_fragments(job: Job) -> list[Fragment]:
    """Everything a page may show of this job, for every group allowed to see it."""
    row = render_to_string("jobs/_job_row.html", {"job": job, "oob": True})
    fragments = [(job_group(job.pk), job_page_fragment(job)), (STAFF_ROWS_GROUP, row)]
    if job.owner_id:
        fragments.append((rows_group(job.owner_id), row))
        if job.entity_key:
            fragments.append((entity_group(job.owner_id, job.entity_key), entity_fragment(job)))
    return fragments


def batch_fragment(batch: Batch) -> str:
    """The batch page's live panel: its one progress and its jobs."""
    context = {"batch": batch, "progress": selectors.batch_progress(batch), "oob": True}
    return render_to_string("jobs/batch_detail.html#live", context)


def batch_fragments(batch_ids: set[int]) -> list[Fragment]:
    return [
        (batch_group(batch.pk), batch_fragment(batch))
        for batch in Batch.objects.filter(pk__in=batch_ids).order_by("pk")
    ]


def workers_banner_fragments(alive: bool) -> list[Fragment]:
    """The workers stopped (or came back): the banner of every user with waiting jobs."""
    context = {"workers_down": not alive, "oob": True}
    html = render_to_string("jobs/_badges.html#workers", context)
    return [(user_group(uid), html) for uid in selectors.owners_of_waiting_jobs()]


def deleted_job_fragments(job_id: int) -> list[Fragment]:
    html = render_to_string("jobs/_job_row.html#deleted", {"job_id": job_id})
    return [(STAFF_ROWS_GROUP, html)]


def has_members(layer, group: str) -> bool:
    """Whether a socket of this process is in the group. A layer that cannot tell
    (not ours) counts as yes: its toasts are taken as shown, as before."""
    check = getattr(layer, "has_members", None)
    return check(group) if check is not None else True


def toast_fragments(notifications: Iterable[Notification]) -> list[Fragment]:
    return [
        (user_group(n.user_id), render_to_string("jobs/_toast.html", {"notification": n}))
        for n in notifications
    ]


def updates_for(
    job_ids: set[int], since_notification: int, badges_sent: dict[int, str] | None = None
) -> tuple[list[Fragment], int, list[tuple[int, int]]]:
    """Fragments for changed jobs, badges of their owners, toasts of new notifications;
    the position in the notifications, and the (id, user id) of those toasted.

    `badges_sent` remembers each user's last badges: most commits change progress, not
    the counts, and need not send every open page of the user a badges frame.
    """
    # Notifications first: a job read afterwards shows at least the state its notification
    # announces, so a page gets the job's final frame before (never after) its toast.
    new_notes = list(Notification.objects.filter(pk__gt=since_notification).order_by("pk"))
    job_ids = set(job_ids) | {n.job_id for n in new_notes if n.job_id}
    jobs = {job.pk: job for job in Job.objects.filter(pk__in=job_ids).select_related("owner")}
    fragments: list[Fragment] = []
    owners: set[int] = set()
    batches = {n.batch_id for n in new_notes if n.batch_id}
    for job_id in sorted(job_ids):
        job = jobs.get(job_id)
        if job is None:
            fragments += deleted_job_fragments(job_id)
            continue
        fragments += job_fragments(job)
        if job.owner_id:
            owners.add(job.owner_id)
        if job.batch_id:
            batches.add(job.batch_id)
    fragments += batch_fragments(batches)
    fragments += toast_fragments(new_notes)
    owners |= {n.user_id for n in new_notes}
    for uid in sorted(owners):
        badges = render_badges(uid)
        if badges_sent is None or badges_sent.get(uid) != badges:
            fragments.append((user_group(uid), badges))
            if badges_sent is not None:
                badges_sent[uid] = badges
    last = new_notes[-1].pk if new_notes else since_notification
    return fragments, last, [(n.pk, n.user_id) for n in new_notes]


# -- the relay (async, one per process) ----------------------------------------


class Relay:
    def __init__(self) -> None:
        self.task: asyncio.Task | None = None
        self.watch_task: asyncio.Task | None = None
        self.workers_were_alive: bool | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-relay")
        self.last_change = 0
        self.last_notification = 0
        self.badges_sent: dict[int, str] = {}
        self._starting: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._listened = False
        self._ready: asyncio.Event | None = None

    def running(self) -> bool:
        loop = asyncio.get_running_loop()
        return self.task is not None and not self.task.done() and self.loop is loop

    async def ensure_started(self) -> None:
        """Start the relay on the running event loop (idempotent).

        The feed positions are read before the first consumer sends its snapshot, so
        every change committed after that snapshot is relayed.
        """
        if self.running():
            return
        loop = asyncio.get_running_loop()
        if self._starting is None or self._starting[0] is not loop:
            self._starting = (loop, asyncio.Lock())
        async with self._starting[1]:
            if self.running():
                return
            await self._in_thread(self._start_positions)
            self.badges_sent.clear()
            self._listened = False
            self._ready = asyncio.Event()
            self.loop = loop
            self.task = loop.create_task(self._run(), name="conveyor-live-relay")
            self.workers_were_alive = None
            self.watch_task = loop.create_task(self._watch_workers(), name="conveyor-workers")
            # On PostgreSQL, wait until LISTEN is active: a NOTIFY before it is lost.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def stop(self) -> None:
        for task in (self.task, self.watch_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.task = self.watch_task = None
        await self._in_thread(_reset_connection)

    async def _in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _run(self) -> None:
        while True:
            try:
                if connection.vendor == "postgresql":
                    await self._listen()
                else:
                    await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the relay must survive database restarts
                log.exception("live relay failed; restarting in 1 s")
                await self._in_thread(_reset_connection)
                await asyncio.sleep(1)

    async def _watch_workers(self) -> None:
        """Tell users with waiting jobs when the last worker stops and when one is back:
        no job changes then, so nothing else would reach their pages."""
        while True:
            try:
                alive = await self._in_thread(selectors.workers_alive)
                if self.workers_were_alive is not None and alive != self.workers_were_alive:
                    fragments = await self._in_thread(workers_banner_fragments, alive)
                    layer = get_channel_layer()
                    for group, html in fragments:
                        await layer.group_send(group, {"type": "live.fragment", "html": html})
                self.workers_were_alive = alive
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not end the watch
                log.exception("checking for live workers failed")
            await asyncio.sleep(WORKERS_WATCH_SECONDS)

    def _start_positions(self) -> None:
        self.last_change = JobChange.objects.aggregate(m=Max("pk"))["m"] or 0
        self.last_notification = Notification.objects.aggregate(m=Max("pk"))["m"] or 0

    async def publish(self, job_ids: set[int]) -> None:
        fragments, self.last_notification, toasted = await self._in_thread(
            updates_for, job_ids, self.last_notification, self.badges_sent
        )
        layer = get_channel_layer()
        # A toast that goes where a page of its user is open here is shown; the others are
        # the next page's "while you were away" (unless another process's page shows them).
        # Marked before it goes: a user who sees it and opens another page is not told twice.
        shown = [pk for pk, uid in toasted if has_members(layer, user_group(uid))]
        if shown:
            await self._in_thread(notifications_mark_shown, shown)
        for group, html in fragments:
            await layer.group_send(group, {"type": "live.fragment", "html": html})

    # SQLite: poll the change feed.
    def _read_changes(self) -> set[int]:
        rows = list(
            JobChange.objects.filter(pk__gt=self.last_change)
            .order_by("pk")
            .values_list("pk", "job_id")[:5000]
        )
        if rows:
            self.last_change = rows[-1][0]
        return {job_id for _, job_id in rows}

    async def _poll(self) -> None:
        """Read the feed when SQLite says another connection committed something.

        `PRAGMA data_version` on a connection of our own changes whenever any other
        connection commits; asking it costs microseconds, so it is asked often (on the
        event loop) and the feed is read only after a commit: low latency, little CPU.
        """
        interval = settings.CONVEYOR_RELAY_POLL_SECONDS
        with contextlib.closing(sqlite3.connect(connection.settings_dict["NAME"])) as watch:
            self._ready.set()
            seen = None
            while True:
                version = watch.execute("PRAGMA data_version").fetchone()[0]
                if version != seen:
                    seen = version
                    job_ids = await self._in_thread(self._read_changes)
                    if job_ids:
                        await self.publish(job_ids)
                await asyncio.sleep(interval)

    # PostgreSQL: LISTEN, coalescing bursts of notifications.
    async def _listen(self) -> None:
        import psycopg

        conf = connection.settings_dict
        aconn = await psycopg.AsyncConnection.connect(
            dbname=conf["NAME"],
            user=conf["USER"],
            password=conf["PASSWORD"] or None,
            host=conf["HOST"] or None,
            port=conf["PORT"] or None,
            autocommit=True,
        )
        async with aconn:
            await aconn.execute(f"LISTEN {CHANNEL}")
            if self._listened:
                # Listening again after a lost connection: resync what may have changed.
                await self.publish(await self._in_thread(_active_job_ids))
            self._listened = True
            self._ready.set()
            while True:
                pending = {int(n.payload) async for n in aconn.notifies(timeout=30, stop_after=1)}
                if not pending:
                    await aconn.execute("SELECT 1")  # keep-alive; raises if the server is gone
                    continue
                # Take what else has already arrived; publish without waiting for more.
                pending |= {int(n.payload) async for n in aconn.notifies(timeout=0)}
                await self.publish(pending)


def _active_job_ids() -> set[int]:
    return set(Job.objects.active().values_list("pk", flat=True))


def _reset_connection() -> None:
    connections["default"].close()


relay = Relay()
