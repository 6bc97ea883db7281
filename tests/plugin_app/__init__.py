"""A separate app that adds a job kind and a processor without any edit in jobs/ or
sheets/: each is one file (`kinds.py`, `processors.py`), found by autodiscovery.
Installed for the tests by tests/settings.py."""
