"""jobs/models.py: who sees which jobs (`Job.objects.visible_to`, the scope of every
front end's job queries)."""

from __future__ import annotations

import pytest

from jobs.models import Job
from tests.jobs.factories import submit_demo

pytestmark = pytest.mark.django_db(transaction=True)


def test_jobs_are_visible_to_their_owner_and_staff_only(user, other_user, staff_user):
    mine = submit_demo(user, n=1)
    theirs = submit_demo(other_user, n=1)
    assert list(Job.objects.visible_to(user)) == [mine]
    assert set(Job.objects.visible_to(staff_user)) == {mine, theirs}
    from django.contrib.auth.models import AnonymousUser

    assert not Job.objects.visible_to(AnonymousUser()).exists()
