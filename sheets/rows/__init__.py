"""A sheet job's rows: which are left (`source`), answers already paid for (`reuse`),
storing outcomes (`results`), running them through a processor and committing them
with the job's cursor (`pipeline`), and what a run would cost before it starts
(`estimate`, for `llm`). The processors themselves know nothing of sheets or jobs
(`sheets.processors`); this package is where rows meet them.
"""
