"""jobs/cli/base.py: how the CLI shows a job's progress (redrawn in place on a terminal,
a line per change in a log) and waits for it to finish. The verbs: test_verbs.py."""

from __future__ import annotations

import io

import pytest
from django.core.management.base import OutputWrapper

from jobs.cli.base import ProgressDisplay, wait_for_job
from jobs.engine.services import job_cancel
from jobs.models import Job
from tests.jobs.factories import submit_demo

S = Job.Status


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def job_at(processed: int, status: str = S.RUNNING) -> Job:
    return Job(pk=5, kind="demo.count", status=status, total=10, processed=processed, failed=1)


def test_on_a_terminal_progress_is_redrawn_in_place():
    screen = FakeTerminal()
    display = ProgressDisplay(OutputWrapper(screen))
    display.show(job_at(2))
    display.show(job_at(2))  # unchanged: not redrawn
    display.show(job_at(5))
    display.end(job_at(10, S.SUCCEEDED))
    drawn = screen.getvalue()
    assert drawn.count("\r") == 3 and drawn.count("\x1b[K") == 3 and drawn.endswith("\n")
    assert "Job #5 running   [####................]  20%  2/10 done, 1 failed" in drawn
    assert "[####################] 100%" in drawn


def test_in_a_log_progress_is_one_line_per_status_change_or_interval():
    log = io.StringIO()
    display = ProgressDisplay(OutputWrapper(log), log_every=60)
    display.show(job_at(0, S.QUEUED))
    for done in (1, 2, 3):
        display.show(job_at(done))  # only the first running line: the rest within 60 s
    display.end(job_at(10, S.SUCCEEDED))
    lines = log.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["queued", "running"]
    assert "\r" not in log.getvalue()
    quick = io.StringIO()
    display = ProgressDisplay(OutputWrapper(quick), log_every=0)
    for done in (1, 2, 3):
        display.show(job_at(done))
    assert len(quick.getvalue().splitlines()) == 3


@pytest.mark.django_db
def test_waiting_for_a_finished_job_prints_its_final_line(admin):
    job = submit_demo(admin, n=3)
    job_cancel(job=job)
    log = io.StringIO()
    assert wait_for_job(job, OutputWrapper(log)).status == S.CANCELLED
    assert log.getvalue() == f"Job #{job.pk} was cancelled: 0/3 done, 0 failed.\n"
