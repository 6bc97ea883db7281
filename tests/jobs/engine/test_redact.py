"""jobs/engine/redact.py: secret-looking keys are masked wherever they are (the admin and
the pages show params and results through it)."""

from __future__ import annotations

from jobs.engine.redact import MASK, redact


def test_redact_masks_secret_looking_keys_at_any_depth():
    data = {
        "options": {"api_key": "sk-1", "apiKey": "x", "max_tokens": 5, "token": ""},
        "headers": [{"Authorization": "Bearer t"}, {"X-Trace": "ok"}],
        "password": None,
    }
    assert redact(data) == {
        "options": {"api_key": MASK, "apiKey": MASK, "max_tokens": 5, "token": ""},
        "headers": [{"Authorization": MASK}, {"X-Trace": "ok"}],
        "password": None,
    }
