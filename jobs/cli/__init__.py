"""The `manage.py conveyor` command line: generic job verbs, and verbs registered by apps."""
