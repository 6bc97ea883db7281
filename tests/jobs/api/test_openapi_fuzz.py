"""Schemathesis fuzzes the whole API from its OpenAPI document (issue #27).

Every operation of `/api/openapi.json`, against a live server (pytest-django's
`live_server`, a real HTTP server on 127.0.0.1) as a normal user with an API token, with
valid and invalid data: no answer is a 5xx, every answer (status, headers, body) is one
the document declares, invalid input is refused with a 4xx, and a method the document
does not list is a 405. Bounded: a few examples per operation and mode, so a pass takes
well under a minute (both suite passes run it, side by side).

Not checked: that every schema-valid request is accepted (Schemathesis's
`positive_data_acceptance`). JSON Schema cannot say what the server checks in code: a
kind's own params, a cron expression, a URL the outbound guard allows, "ids or all";
those are 400s with `fields`, which the document declares.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.test import override_settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import HealthCheck

from jobs.api.openapi import document
from jobs.tokens import token_create

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 20  # per operation and mode; ~50 operations

KINDS = ["sheets.process", "demo.count"]  # demo.count: jobs the fuzzer can really submit

with override_settings(CONVEYOR_SUBMITTABLE_KINDS=KINDS):
    schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
)
schema.config.update(suppress_health_check=[HealthCheck.all])


@pytest.fixture
def token(user, settings) -> str:
    settings.CONVEYOR_SUBMITTABLE_KINDS = KINDS
    return token_create(user=user, name="fuzz")[1]


@schema.parametrize()
def test_every_operation_holds_to_the_document(case, live_server, token):
    case.call_and_validate(
        base_url=live_server.url,
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[positive_data_acceptance],
        timeout=30,
    )
