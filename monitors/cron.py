"""`isletops monitor install-cron`: one crontab line per instance, written idempotently; and the
log a cron-run probe keeps (`isletops probe --log FILE`).

The line carries a marker comment (`# isletops-probe:<instance>`); installing again replaces
that line in place (and changes nothing when it is already right), other lines are kept byte
for byte. Works on the user's crontab through the `crontab` command, or on a file (`--crontab-file`,
used by tests and for /etc/cron.d-style setups managed elsewhere).

The probe log is rotated by size (`PROBE_LOG_MAX_BYTES`, `PROBE_LOG_BACKUPS` older files), so a
probe every 5 minutes cannot fill the disk: at about 8 lines a pass that is two weeks of history.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from isletops.errors import IsletOpsError

MARKER_PREFIX = "# isletops-probe:"
PROBE_LOG_MAX_BYTES = 1024 * 1024  # then probe.log becomes probe.log.1, probe.log.1 becomes .2, ...
PROBE_LOG_BACKUPS = 2


class CronError(IsletOpsError):
    """The crontab could not be read or written, or the schedule is malformed."""


@dataclass
class CronChange:
    line: str
    changed: bool
    target: str  # "crontab of <user>" or the file path


def validate_schedule(schedule: str) -> str:
    fields = schedule.split()
    if schedule.startswith("@") and len(fields) == 1:
        return schedule
    if len(fields) != 5:
        raise CronError(
            f"'{schedule}' is not a cron schedule.", "Use five fields like '*/5 * * * *' (every five minutes)."
        )
    return " ".join(fields)


def cron_line(schedule: str, command: list[str], instance: str) -> str:
    return f"{validate_schedule(schedule)} {shlex.join(command)} {MARKER_PREFIX}{instance}"


def merge(current: str, line: str, instance: str) -> tuple[str, bool]:
    """`current` crontab text with the instance's line set to `line`; (text, changed)."""
    marker = f"{MARKER_PREFIX}{instance}"
    lines = current.splitlines()
    kept = [existing for existing in lines if not existing.rstrip().endswith(marker)]
    position = next((i for i, existing in enumerate(lines) if existing.rstrip().endswith(marker)), None)
    if position is None:
        merged = kept + [line]
    else:
        before = sum(1 for existing in lines[:position] if not existing.rstrip().endswith(marker))
        merged = kept[:before] + [line] + kept[before:]
    text = "\n".join(merged) + "\n"
    return text, text != (current if current.endswith("\n") or not current else current + "\n")


def _read(crontab_file: Path | None) -> str:
    if crontab_file is not None:
        try:
            return crontab_file.read_text()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise CronError(f"Cannot read {crontab_file}: {exc.strerror}.") from None
    binary = shutil.which("crontab")
    if binary is None:
        raise CronError(
            "The crontab command is not installed.", "Install cron (apt-get install cron) or pass --crontab-file."
        )
    listed = subprocess.run([binary, "-l"], capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        if "no crontab" in listed.stderr.lower():
            return ""
        raise CronError(f"crontab -l failed: {listed.stderr.strip()}.")
    return listed.stdout


def _write(crontab_file: Path | None, text: str) -> None:
    if crontab_file is not None:
        crontab_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = crontab_file.with_name(f".{crontab_file.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, crontab_file)
        return
    binary = shutil.which("crontab") or "crontab"
    done = subprocess.run([binary, "-"], input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CronError(f"crontab refused the new table: {done.stderr.strip()}.")


def install(
    schedule: str, command: list[str], instance: str, crontab_file: Path | None = None, dry_run: bool = False
) -> CronChange:
    """Put the probe line for `instance` into the crontab; nothing is written when it is already there."""
    line = cron_line(schedule, command, instance)
    text, changed = merge(_read(crontab_file), line, instance)
    if changed and not dry_run:
        _write(crontab_file, text)
    target = str(crontab_file) if crontab_file else f"crontab of {os.environ.get('USER', 'this user')}"
    return CronChange(line=line, changed=changed, target=target)


def append_to_log(
    path: Path, lines: Iterable[str], max_bytes: int = PROBE_LOG_MAX_BYTES, backups: int = PROBE_LOG_BACKUPS
) -> None:
    """Append `lines` to the log at `path`, each after a UTC time stamp, rotating it by size
    (the standard library's RotatingFileHandler: at most `backups` older files are kept)."""
    formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
    except OSError as exc:
        raise CronError(f"Cannot write the probe log {path}: {exc.strerror}.") from None
    handler.setFormatter(formatter)
    try:
        for line in lines:
            handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))
    finally:
        handler.close()
