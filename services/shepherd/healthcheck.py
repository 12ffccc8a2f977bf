"""`python -m services.shepherd.healthcheck`: exit 0 when the worker's heartbeat file is fresh,
1 otherwise (with one line saying why). Used by the container healthcheck."""

from __future__ import annotations

import sys

from services.shepherd.config import ShepherdConfig
from services.shepherd.heartbeat import heartbeat_age, read_heartbeat


def check(config: ShepherdConfig) -> tuple[bool, str]:
    age = heartbeat_age(config.heartbeat_file)
    if age is None:
        return False, f"no heartbeat file {config.heartbeat_file}: the shepherd loop has not started or died"
    if age > config.heartbeat_max_age_s:
        status = read_heartbeat(config.heartbeat_file)
        detail = f" (last state: {status.get('state')})" if status.get("state") else ""
        return (
            False,
            f"heartbeat is {age:.0f}s old (limit {config.heartbeat_max_age_s:.0f}s){detail}: the shepherd is stuck",
        )
    return True, f"heartbeat {age:.0f}s old"


def main() -> int:
    healthy, message = check(ShepherdConfig.from_env())
    print(("ok: " if healthy else "unhealthy: ") + message)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
