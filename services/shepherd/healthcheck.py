"""`python -m services.shepherd.healthcheck`: exit 0 when the worker's heartbeat file is fresh,
1 otherwise (with one line saying why). Used by the container healthcheck."""

from __future__ import annotations

import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def serve_health(config: ShepherdConfig) -> ThreadingHTTPServer | None:
    """`GET /health` on SHEPHERD_HEALTH_PORT in a background thread: 200 when the heartbeat is
    fresh, 503 otherwise, with {"status", "detail", "worker"} as JSON. None when turned off or the
    port is taken (logged; the file-based healthcheck still works)."""
    if config.health_port <= 0:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] != "/health":
                self.send_error(404)
                return
            healthy, message = check(config)
            body = json.dumps(
                {
                    "status": "ok" if healthy else "unhealthy",
                    "detail": message,
                    "worker": read_heartbeat(config.heartbeat_file),
                }  # fmt: skip
            ).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:  # probes every few seconds: keep logs quiet
            return

    try:
        server = ThreadingHTTPServer(("0.0.0.0", config.health_port), Handler)  # noqa: S104 - container-internal health port  # nosec B104
    except OSError as problem:
        logging.getLogger("services.shepherd").warning(
            "health endpoint not started on %d: %s", config.health_port, problem
        )
        return None
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server


def main() -> int:
    healthy, message = check(ShepherdConfig.from_env())
    print(("ok: " if healthy else "unhealthy: ") + message)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
