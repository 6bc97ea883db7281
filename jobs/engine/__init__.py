"""The engine: what runs in workers and writes jobs.

Imports only `jobs.models` and its own modules. `transitions` is the one writer of job
state; `services` is what front ends (pages, API, admin, CLI) call to change a job.
"""
