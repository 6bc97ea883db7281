"""The JSON API under /api/ (see `jobs.api.views` for its conventions)."""
