"""What a plug-in app may use of the jobs engine: its one door besides `jobs.models`.

`sheets` (and any app like it) imports from here and from `jobs.models` only; `make
test` checks that (scripts/check_imports.py). Everything else in `jobs` may change
shape without notice; a name added here is a promise. Grouped by what a plug-in does:

- **define a kind**: `job_kind`, `JobContext` and the errors a handler raises;
- **submit and manage jobs**: the services (`job_submit`, `batch_submit`, …) and the
  rules they share (`may_submit_for`, `priority_for`);
- **show jobs**: serializers, sort keys, the job page's extension points;
- **reserve keys, redact, retry on lock**: the small engine helpers a plug-in needs;
- **admin, CLI and pages**: the base classes and helpers their front ends are built
  from (`token_or_login_required`: a download scripts fetch with their API token).
"""

from __future__ import annotations

from jobs.admin import FilterLookupsOnly, ViewOnly, json_block
from jobs.api.auth import token_or_login_required
from jobs.cli.base import (
    EXIT_JOB_FAILED,
    CliError,
    Verb,
    deduplicated,
    find_job,
    register_verb,
    wait_for_job,
)
from jobs.cli.schedules import GROUP, add_schedule_arguments, create_schedule, schedule_text
from jobs.engine.context import JobContext
from jobs.engine.db import atomic_retry
from jobs.engine.errors import (
    Cancelled,
    InvalidChanges,
    JobActionError,
    PauseJob,
    PermanentError,
    Postponed,
    Preempted,
    QuotaExceeded,
    SliceDone,
    StopSlice,
    TransientError,
)
from jobs.engine.keys import reserve_entity_prefix
from jobs.engine.kinds import job_kind
from jobs.engine.redact import is_secret_name, redact
from jobs.engine.secrets import unseal as unseal_params
from jobs.engine.services import (
    Submission,
    batch_submit,
    checked_submission,
    job_delete,
    job_submit,
    job_submit_many,
    notifications_mark_read,
)
from jobs.engine.shared_state import apply_shared_state
from jobs.extensions import Link, UnitTable, extend_kind, set_start_page
from jobs.outbound import AddressGuard, OutboundRefused, address_kind, guarded_client
from jobs.schedules.services import schedule_delete
from jobs.selectors import batch_progress, may_submit_for, missing_jobs, priority_for, sort_key
from jobs.serializers import batch_as_dict, job_as_dict, schedule_as_dict

__all__ = [
    # define a kind
    "job_kind",
    "JobContext",
    "Cancelled",
    "PermanentError",
    "Postponed",
    "PauseJob",
    "Preempted",
    "SliceDone",
    "StopSlice",
    "TransientError",
    # submit and manage jobs
    "Submission",
    "job_submit",
    "job_submit_many",
    "batch_submit",
    "checked_submission",
    "job_delete",
    "schedule_delete",
    "notifications_mark_read",
    "JobActionError",
    "InvalidChanges",
    "QuotaExceeded",
    "may_submit_for",
    "priority_for",
    "missing_jobs",
    # show jobs
    "job_as_dict",
    "batch_as_dict",
    "schedule_as_dict",
    "batch_progress",
    "sort_key",
    "Link",
    "UnitTable",
    "extend_kind",
    "set_start_page",
    # engine helpers
    "reserve_entity_prefix",
    "redact",
    "unseal_params",
    "is_secret_name",
    "atomic_retry",
    "apply_shared_state",
    # outbound requests (the guard every request to the outside goes through)
    "AddressGuard",
    "OutboundRefused",
    "address_kind",
    "guarded_client",
    # admin, CLI and pages
    "token_or_login_required",
    "FilterLookupsOnly",
    "ViewOnly",
    "json_block",
    "Verb",
    "CliError",
    "EXIT_JOB_FAILED",
    "deduplicated",
    "find_job",
    "register_verb",
    "wait_for_job",
    "GROUP",
    "add_schedule_arguments",
    "create_schedule",
    "schedule_text",
]
