"""What users may do to jobs, batches and schedules: one registry per entity, each action
one entry (`base.Action`), from which the pages, the JSON API, the admin and the CLI
build their routes, buttons, admin actions and verbs. Adding an action is one entry."""
