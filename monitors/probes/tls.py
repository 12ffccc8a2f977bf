"""Probe `tls`: the public URL's certificate is valid, trusted, for this host, and not expiring.

Connects like a browser would (system CAs, or `ca_file`; hostname checked) and reads the expiry
of the certificate the server presents: WARNING under `warning_days`, CRITICAL under
`critical_days` or when the certificate is not accepted at all.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from monitors.metrics import Measurement
from monitors.result import ProbeContext, ProbeResult, Status

NAME = "tls"
INTERVAL_S = 6 * 3600
DEFAULTS: dict[str, Any] = {
    "url": "",  # default: the instance's public_url
    "warning_days": 14.0,
    "critical_days": 3.0,
    "timeout_s": 10.0,
    "ca_file": "",  # trust this CA bundle instead of the system's
}


def enabled(context: ProbeContext) -> bool:
    return (context.options.get("url") or context.instance.public_url).startswith("https://")


def _fetch_certificate(host: str, port: int, server_name: str, options: dict[str, Any], verify: bool) -> bytes:
    if verify:
        context = ssl.create_default_context(cafile=options["ca_file"] or None)
    else:  # only to read the expiry of a certificate that failed verification
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=float(options["timeout_s"])) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.getpeercert(binary_form=True) or b""


def run(context: ProbeContext) -> ProbeResult:
    url = context.options.get("url") or context.instance.public_url
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return ProbeResult(NAME, Status.UNKNOWN, None, f"no https public URL to check (got '{url}'); set public_url")
    host, port = parts.hostname, parts.port or 443
    problem = ""
    try:
        der = _fetch_certificate(host, port, host, context.options, verify=True)
    except ssl.SSLCertVerificationError as exc:
        problem = f"certificate not accepted: {exc.verify_message or exc.reason}"
        try:
            der = _fetch_certificate(host, port, host, context.options, verify=False)
        except (OSError, ssl.SSLError):
            der = b""
    except (OSError, ssl.SSLError) as exc:
        return ProbeResult(NAME, Status.CRITICAL, None, f"TLS handshake with {host}:{port} failed: {exc}")
    if not der:
        return ProbeResult(NAME, Status.CRITICAL, None, problem or f"{host}:{port} presented no certificate")
    certificate = x509.load_der_x509_certificate(der)
    expires = certificate.not_valid_after_utc.timestamp()
    days = (expires - context.now) / 86400
    details = {
        "unit": "days left",
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
    }
    when = certificate.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    value = round(days, 2)
    options = context.options
    measurements = [
        Measurement("tls_certificate_expiry", expires),
        Measurement("tls_certificate_remaining", round(expires - context.now),
                    warn=float(options["warning_days"]) * 86400, crit=float(options["critical_days"]) * 86400),
    ]  # fmt: skip
    if days <= 0:
        message = f"certificate of {host} expired on {when}"
        return ProbeResult(NAME, Status.CRITICAL, value, message, details, measurements=measurements)
    if problem:
        return ProbeResult(NAME, Status.CRITICAL, value, f"{host}: {problem}", details, measurements=measurements)
    remaining = f"certificate of {host} expires in {days:.1f} days ({when})"
    if days < float(context.options["critical_days"]):
        return ProbeResult(NAME, Status.CRITICAL, value, remaining, details, measurements=measurements)
    if days < float(context.options["warning_days"]):
        message = remaining + ": is certbot renewing?"
        return ProbeResult(NAME, Status.WARNING, value, message, details, measurements=measurements)
    return ProbeResult(NAME, Status.OK, value, remaining, details, measurements=measurements)
