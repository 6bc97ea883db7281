"""Out-of-app notices: webhooks and e-mail for the events `job.succeeded`, `job.failed`,
`job.cancelled`, `batch.finished`, `schedule.failed`, and the batches' `on_complete` jobs.

- `services`: what users do (add, list, delete, test a webhook; opt into e-mail), with
  its checks (URL, events, the outbound guard, the per-user ceiling);
- `delivery`: how deliveries are sent (signed, through the outbound guard, retried with
  backoff, a webhook disabled after repeated failures) and when (the upkeep);
- `callbacks`: a finished batch's `on_complete` job.

The journal (`jobs.engine.journal`) writes the pending deliveries in the transaction
that ends a job or a batch; everything here runs later, outside any worker's job.
"""
