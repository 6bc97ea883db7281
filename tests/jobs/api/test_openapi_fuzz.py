"""Schemathesis fuzzes the whole API from its OpenAPI document (issue #27).

Every operation of `/api/openapi.json`, against a live server (pytest-django's
`live_server`, a real HTTP server on 127.0.0.1) as a normal user with an API token, with
valid and invalid data: no answer is a 5xx, every answer (status, headers, body) is one
the document declares, invalid input is refused with a 4xx, and a method the document
does not list is a 405. Then chains of calls along the document's links (create, then
act on what was created). Bounded: a few examples per operation and mode and a few
dozen chains, about a minute a pass on SQLite, two on PostgreSQL (both suite passes run
it, side by side); no Hypothesis deadline, so a slow machine is slower, not flaky.

Not checked: that every schema-valid request is accepted (Schemathesis's
`positive_data_acceptance`). JSON Schema cannot say what the server checks in code: a
kind's own params, a cron expression, a URL the outbound guard allows, "ids or all";
those are 400s with `fields`, which the document declares.
"""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from django.test import override_settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import HealthCheck

from jobs.api.openapi import document
from jobs.engine.services import Submission, batch_submit
from jobs.models import Batch, Job, Notification, Schedule, Webhook
from jobs.notices import services
from jobs.schedules.services import schedule_create
from jobs.tokens import token_create
from tests.fakes.receiver import WebhookReceiver
from tests.jobs.factories import submit_demo

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 15  # per operation and mode; ~50 operations
SCENARIOS = 30  # chains of calls along the document's links
STEPS = 6  # calls a chain

KINDS = ["sheets.process", "demo.count"]  # demo.count: jobs the fuzzer can really submit

with override_settings(CONVEYOR_SUBMITTABLE_KINDS=KINDS):
    schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,  # the same cases every run: a failure repeats
    database="none",  # no .hypothesis/ examples shared by the two passes running at once
)
schema.config.update(suppress_health_check=[HealthCheck.all])


@pytest.fixture
def token(user, settings) -> str:
    settings.CONVEYOR_SUBMITTABLE_KINDS = KINDS
    return token_create(user=user, name="fuzz")[1]


@pytest.fixture
def receiver(settings) -> Iterator[WebhookReceiver]:
    settings.CONVEYOR_WEB_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture
def objects(user, receiver) -> dict[str, object]:
    """The user's own job, batch, schedule and webhook: path parameters that exist, so
    that reads and actions get past the 404 (random ids rarely name a row)."""
    job = submit_demo(user, n=2, entity_key="fuzz-entity")
    batch, _ = batch_submit(owner=user, submissions=[Submission(kind="demo.count")], label="b")
    schedule = schedule_create(owner=user, kind="demo.count", every=3600)
    webhook, _ = services.webhook_create(user, receiver.url, ["job.failed"])
    return {
        "job_id": job.pk,
        "batch_id": batch.pk,
        "schedule_id": schedule.pk,
        "webhook_id": webhook.pk,
        "name": "demo.count",
        "key": "fuzz-entity",
    }


def use_real_objects(case, objects: dict[str, object]) -> None:
    """Half of the valid cases (chosen by the generated value, so runs repeat) name the
    user's real objects instead of random ones."""
    if case.meta is not None and case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    for name, value in (case.path_parameters or {}).items():
        if name in objects and len(str(value)) % 2 == 0:
            case.path_parameters[name] = objects[name]


def call_options(live_server, token: str) -> dict:
    return {
        "base_url": live_server.url,
        "headers": {"Authorization": f"Bearer {token}"},
        "timeout": 30,
    }


@schema.parametrize()
def test_every_operation_holds_to_the_document(case, live_server, token, objects):
    use_real_objects(case, objects)
    case.call_and_validate(
        **call_options(live_server, token), excluded_checks=[positive_data_acceptance]
    )


def test_chains_of_calls_along_the_links_hold_to_the_document(live_server, token):
    """Stateful: create a job, batch, schedule or webhook, then act on it with the id
    the answer gave (the 201s' OpenAPI links), and so on, checking every answer."""

    class Workflow(schema.as_state_machine()):
        def setup(self):
            """Every scenario starts from the same rows (none): Hypothesis requires that
            the same choices lead to the same calls."""
            for model in (Job, Batch, Schedule, Webhook, Notification):
                model.objects.all().delete()

        def get_call_kwargs(self, case):
            return call_options(live_server, token)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response, excluded_checks=[positive_data_acceptance], transport_kwargs=kwargs
            )

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            # Only new scenarios: a replay (to shrink, to explain) cannot repeat one, as
            # the server's rows have changed since, and Hypothesis calls that flaky.
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
