"""The security headers on the backend's own answers: the list every nginx of IsletNet sends
(services/common/security-headers.conf), read from that file so that there is one list.

Behind the frontend or the edge those nginx replace them with the same values; on Kubernetes the
Ingress sends /api straight to the backend, and these are then the ones the browser gets.
"""

from __future__ import annotations

import re
from pathlib import Path

from services.common.settings import ConfigError

HEADERS_FILE = Path(__file__).resolve().parents[1] / "common" / "security-headers.conf"
_ADD_HEADER = re.compile(r'^add_header (?P<name>[A-Za-z-]+) "(?P<value>[^"]*)" always;$', re.MULTILINE)


def read_security_headers(path: Path = HEADERS_FILE) -> dict[str, str]:
    """Header name -> value, from the `add_header NAME "VALUE" always;` lines of `path`."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"The security header list {path} cannot be read ({error.strerror}).") from None
    headers = {match["name"]: match["value"] for match in _ADD_HEADER.finditer(text)}
    if not headers:
        raise ConfigError(f"The security header list {path} has no 'add_header NAME \"VALUE\" always;' line.")
    return headers
