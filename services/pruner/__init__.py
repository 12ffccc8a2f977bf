"""The pruner service: deletes job images and results past retention, never training-marked jobs.

Run with `python -m services.pruner` (loop), `--once`, or `--dry-run`; the container healthcheck
is `python -m services.pruner.healthcheck`. The rules live in `services.pruner.prune`.
"""
