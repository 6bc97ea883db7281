"""Schedules: recurring job runs (the rule, the services that keep them, the due runs)."""
