"""`python -m services.pruner.healthcheck`: healthy when the last successful pass is recent.

Recent means within 2 × PRUNE_INTERVAL_SECONDS + 5 minutes (the interval is read from the
record itself, so the check agrees with the running loop). The last line printed is the record
as one JSON object; the `pruner` monitor probe reads it from the container's health output.
Exit 0 healthy, 1 unhealthy (Docker's convention).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.common.times import parse_utc
from services.pruner.status import PrunerConfigError, PrunerSettings, read_status_file

GRACE_S = 300.0


def check(record: dict[str, Any] | None, now: datetime | None = None) -> tuple[bool, str]:
    """(healthy, one sentence) for a status record."""
    last_error = str(record.get("last_error") or "none").rstrip(".") if record else "none"
    if record is None:
        return False, "The pruner has not recorded a pass yet; see its log (isletops logs pruner)."
    now = now or datetime.now(UTC)
    interval = float(record.get("interval_s") or 3600)
    limit = 2 * interval + GRACE_S
    success = parse_utc(record.get("last_success_at"))
    if success is None:
        return False, f"The pruner has never finished a pass; last error: {last_error}."
    age = (now - success).total_seconds()
    if age > limit:
        return False, (f"The last successful prune was {age:.0f} s ago (allowed {limit:.0f} s); "
                       f"last error: {last_error}.")
    if not record.get("ok"):
        return True, f"The last pass failed ({last_error}), but one succeeded {age:.0f} s ago."
    return True, f"The last successful prune was {age:.0f} s ago."


def main(argv: list[str] | None = None) -> int:
    arguments = argv if argv is not None else sys.argv[1:]
    try:
        path = Path(arguments[0]) if arguments else PrunerSettings.from_env().status_file
    except PrunerConfigError as error:
        print(str(error))
        return 1
    record = read_status_file(path)
    healthy, sentence = check(record)
    print(sentence)
    print(json.dumps(record if record is not None else {"last_success_at": None, "last_error": sentence}))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
