"""Conveyor's benchmarks: scripts that print figures next to baselines measured in the same
run (see bench/README.md). `python bench/run.py --help` lists them.
"""
