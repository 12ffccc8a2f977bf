"""The one list of security headers (security-headers.conf beside this module): where it is, and
its headers as the backend adds them to its own answers. The edge and frontend images include the
file in their nginx config, and the host's nginx site puts it in (isletops.nginx).

Behind the frontend or the edge those nginx replace the backend's copies with the same values; on
Kubernetes the Ingress sends /api straight to the backend, and its copies reach the browser.
"""

from __future__ import annotations

import re
from pathlib import Path

from services.common.settings import ConfigError

HEADERS_FILE = Path(__file__).resolve().with_name("security-headers.conf")
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
