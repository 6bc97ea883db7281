"""The built-in processors, one module each: `copy` (the no-op), `clean`, `llm`, `web`.

Not imported here: the registry imports them on its first use (`registry.BUILT_INS`).
Each is a worked example of docs/processors.md: `copy` the smallest plain one, `web`
an async one with a session and the outbound guard, `llm` one with rate limits, usage
and reuse.
"""
