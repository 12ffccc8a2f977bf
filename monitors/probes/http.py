"""Probe `http`: the frontend answers at its URL, `/api/health` says ok, in reasonable time.

Goes the way users go: the public URL (through the host's nginx) when configured, otherwise the
instance's frontend port (whose nginx proxies /api/ to the backend).
"""

from __future__ import annotations

import re
import time
from typing import Any

import requests

from monitors.metrics import Measurement
from monitors.result import ProbeContext, ProbeResult, Status, worst

NAME = "http"
INTERVAL_S = 60
DEFAULTS: dict[str, Any] = {
    "base_url": "",  # default: the instance's public_url, else its frontend URL
    "checks": [  # path, expected status, severity when it fails
        {"path": "/", "expect": 200, "severity": "CRITICAL"},
        {"path": "/api/health", "expect": 200, "severity": "CRITICAL", "json_status": "ok"},
        # Without credentials the statistics must be refused: a 200 would mean access control is off.
        {"path": "/api/statistics/access_statistics.xlsx", "expect": 401, "severity": "WARNING"},
    ],
    "timeout_s": 10.0,
    "slow_s": 3.0,  # slower than this is a WARNING
    "verify_tls": True,
    "ca_file": "",
}


def base_url(context: ProbeContext) -> str:
    url = context.options.get("base_url") or context.instance.public_url or context.instance.frontend_url
    return url.rstrip("/")


def reason(exc: BaseException) -> str:
    """A short cause for a failed request: 'Connection refused', 'Name or service not known', ..."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    if match:
        return match.group(1).strip().rstrip(".")
    if isinstance(exc, requests.exceptions.SSLError):
        found = re.search(r"(certificate verify failed: [^(')\"]+|SSLError\([^)]*)", str(exc))
        return found.group(1).strip() if found else "TLS error"
    return type(exc).__name__


def _check(session: requests.Session, url: str, check: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    severity = Status[str(check.get("severity", "CRITICAL")).upper()]
    verify: bool | str = options["ca_file"] or bool(options["verify_tls"])
    started = time.monotonic()
    outcome: dict[str, Any] = {"url": url, "status": Status.OK, "code": None}
    try:
        # Streamed: a report download is judged by its status line, not fetched whole every minute.
        with session.get(url, timeout=float(options["timeout_s"]), verify=verify, stream=True) as response:
            outcome["code"] = response.status_code
            if response.status_code != int(check.get("expect", 200)):
                phrase = f"{url} answered {response.status_code}, expected {check.get('expect', 200)}"
                outcome.update(status=severity, phrase=phrase)
            elif check.get("json_status"):
                body = _json(response)
                if not isinstance(body, dict) or body.get("status") != check["json_status"]:
                    outcome.update(status=severity, phrase=f"{url} says {str(body)[:120]}")
    except requests.Timeout:
        outcome.update(status=severity, phrase=f"{url} timed out after {options['timeout_s']} s")
    except requests.RequestException as exc:
        outcome.update(status=severity, phrase=f"{url} unreachable ({reason(exc)})")
    outcome["seconds"] = round(time.monotonic() - started, 3)
    if outcome["status"] is Status.OK and outcome["seconds"] > float(options["slow_s"]):
        outcome.update(status=Status.WARNING, phrase=f"{url} slow ({outcome['seconds']:.1f} s)")
    return outcome


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def run(context: ProbeContext) -> ProbeResult:
    base = base_url(context)
    with requests.Session() as session:
        checks = context.options["checks"]
        outcomes = [_check(session, base + check["path"], check, context.options) for check in checks]
    status = worst([outcome["status"] for outcome in outcomes])
    slowest = max((outcome["seconds"] for outcome in outcomes), default=0.0)
    problems = [outcome["phrase"] for outcome in outcomes if outcome["status"] is not Status.OK]
    message = "; ".join(problems) if problems else f"{len(outcomes)} URLs ok, slowest {slowest:.2f} s"
    details = {"unit": "s", "checks": [{**o, "status": o["status"].name} for o in outcomes]}
    measurements = [
        Measurement("http_response_duration", outcome["seconds"], {"path": check["path"]},
                    warn=float(context.options["slow_s"]), crit=float(context.options["timeout_s"]), minimum=0.0)
        for check, outcome in zip(checks, outcomes, strict=True)
    ]  # fmt: skip
    return ProbeResult(NAME, status, slowest, message, details, measurements=measurements)
