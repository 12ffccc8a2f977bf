"""`python -m services.pruner`: the retention loop, one pass (`--once`) or a listing (`--dry-run`).

The loop runs a pass at start and then PRUNE_INTERVAL_SECONDS after the end of each pass (never
two at once); after a failed pass it tries again within a minute. SIGTERM/SIGINT stop it between
two jobs, so a stop never leaves a job half-deleted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from services.common.database import JobDatabase
from services.common.errors import ServiceError
from services.common.storage import ObjectStore
from services.pruner.prune import Pruner, PrunerSettings, RunReport

log = logging.getLogger("services.pruner")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.pruner",
        description="Delete job images and results older than RETENTION_SECONDS; training-marked jobs are kept.",
        epilog="Example: python -m services.pruner --dry-run --retention-seconds 604800",
    )
    parser.add_argument("--once", action="store_true", help="run one pass and exit (exit 2 when it failed)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    parser.add_argument("--retention-seconds", type=float, help="override RETENTION_SECONDS")
    parser.add_argument("--interval-seconds", type=float, help="override PRUNE_INTERVAL_SECONDS")
    parser.add_argument("--status-file", type=Path, help="override PRUNER_STATUS_FILE")
    return parser.parse_args(argv)


def settings_from(arguments: argparse.Namespace) -> PrunerSettings:
    settings = PrunerSettings.from_env()
    if arguments.retention_seconds is not None:
        settings = replace(settings, retention_s=max(0.0, arguments.retention_seconds))
    if arguments.interval_seconds is not None:
        settings = replace(settings, interval_s=max(1.0, arguments.interval_seconds))
    if arguments.status_file is not None:
        settings = replace(settings, status_file=arguments.status_file)
    return settings


def print_dry_run(report: RunReport, settings: PrunerSettings) -> None:
    if not report.ok:
        print(f"pruner: error: {report.error}", file=sys.stderr)
        return
    for files in report.planned:
        print(f"would delete {files.describe()}")
    for orphan in report.planned_orphans:
        print(f"would delete {orphan.describe()}")
    total = sum(files.size for files in report.planned) + sum(orphan.size for orphan in report.planned_orphans)
    synthetic = sum(1 for files in report.planned if files.job.synthetic)
    also = f" (and {synthetic} synthetic test jobs)" if synthetic else ""
    if report.planned_orphans:
        also += f" and {len(report.planned_orphans)} jobs' orphaned files"
    print(f"dry run: {len(report.planned) - synthetic} jobs{also} past {settings.retention_s:g} s retention, {total} "
          f"bytes would be freed; {report.training_jobs} training jobs ({report.training_bytes} bytes) are kept.")


# After a failed pass (storage or database down) the next try comes sooner than a whole interval.
FAILED_PASS_RETRY_S = 60.0


def loop(pruner: Pruner, stop: threading.Event) -> None:
    while not stop.is_set():
        report = pruner.run_once()
        if report.ok:
            log.info("prune pass done: %s, %d bytes freed", report.deleted(), report.freed_bytes)
            stop.wait(pruner.settings.interval_s)
        else:
            stop.wait(min(pruner.settings.interval_s, FAILED_PASS_RETRY_S))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    arguments = parse_arguments(argv)
    try:
        settings = settings_from(arguments)
        store = ObjectStore.from_env()
        database = JobDatabase.from_env()
    except ServiceError as error:
        print(f"pruner: error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    pruner = Pruner(store, database, settings, should_stop=stop.is_set)
    if arguments.dry_run:
        report = pruner.run_once(dry_run=True)
        print_dry_run(report, settings)
        return 0 if report.ok else 2
    if arguments.once:
        report = pruner.run_once()
        return 0 if report.ok else 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("pruner started: retention %g s, every %g s, status file %s",
             settings.retention_s, settings.interval_s, settings.status_file)
    loop(pruner, stop)
    log.info("pruner stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
