"""Which sheet a request may see, run or change: the lookups every sheet page starts with
(a sheet outside them is a 404, never a 403, so ids of others' sheets are not revealed)."""

from __future__ import annotations

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from sheets import selectors
from sheets.models import Sheet


def visible_sheet(request: HttpRequest, sheet_id: int) -> Sheet:
    return get_object_or_404(Sheet.objects.visible_to(request.user), pk=sheet_id)


def sheet_to_run(request: HttpRequest, sheet_id: int) -> Sheet:
    """Starting work on a sheet (a run, a trial, a chain, a run queued behind its import)
    submits in the sheet owner's name: the owner's own, or for someone with the permission
    to act for another user (`selectors.may_submit_for`). Anyone else, staff included,
    gets a 404, as for renaming or deleting."""
    visible_sheet(request, sheet_id)
    sheet = selectors.sheet_to_run(request.user, sheet_id)
    if sheet is None:
        raise Http404("No sheet of yours matches the given query.")
    return sheet


def own_sheet(request: HttpRequest, sheet_id: int) -> Sheet:
    """Renaming and deleting: the owner's own sheets only (staff too see, not change)."""
    return get_object_or_404(Sheet, pk=sheet_id, owner=request.user)
