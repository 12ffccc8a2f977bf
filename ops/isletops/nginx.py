"""The host nginx site for IsletNet (/etc/nginx/conf.d/isletnet.conf): its settings, their
validation and the rendering of nginx/isletnet.conf.j2.

`isletops render nginx` and the provisioning playbook (through its filter plugin) both call
`render_site`, so the file on a host is exactly what the command shows.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from isletops.errors import ConfigError
from isletops.render import render_template
from services.common.security_headers import HEADERS_FILE as SECURITY_HEADERS_FILE

SITE_PATH = "/etc/nginx/conf.d/isletnet.conf"
SELF_SIGNED_DIR = "/etc/ssl/isletnet"
LETSENCRYPT_LIVE_DIR = "/etc/letsencrypt/live"
# Inventory variables are the site's fields with this prefix (nginx_server_name, ...).
VARIABLE_PREFIX = "nginx_"

_UPSTREAM = re.compile(r"^[A-Za-z0-9.\-_]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$|^unix:/\S+$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9\-]{0,62})?(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,62})?)*$")
_SIZE = re.compile(r"^\d+[kKmMgG]?$")


@dataclass(frozen=True)
class NginxSite:
    """Everything the site template needs. An empty `server_name` means "no public name":
    the site answers any name and uses the self-signed certificate."""

    server_name: str = ""
    listen_address: str = ""  # empty: all addresses
    http_port: int = 80
    https_port: int = 443
    frontend_upstream: str = "127.0.0.1:8080"
    # The instance's public port too: its frontend proxies /api/ to the backend. Point it at the
    # backend's own port only for an instance with publish_api_port: true.
    backend_upstream: str = "127.0.0.1:8080"
    ssl_certificate: str = f"{SELF_SIGNED_DIR}/isletnet.crt"
    ssl_certificate_key: str = f"{SELF_SIGNED_DIR}/isletnet.key"
    # Microscope images are large; keep this at or above the backend's MAX_UPLOAD_MB.
    client_max_body_size: str = "200m"
    # Long uploads over slow hospital links and large ZIP/report downloads.
    proxy_timeout_s: int = 600
    acme_webroot: str = "/var/www/acme"
    hsts_max_age_s: int = 31_536_000
    # The monitor daemon's status page (`isletops monitor`, host:port, e.g. 127.0.0.1:9110), shown at
    # /monitor/ to people signed in to IsletNet (nginx asks the backend's /api/auth/session first).
    # Empty: not exposed.
    status_page_upstream: str = ""

    def __post_init__(self) -> None:
        validate_site(self)

    @property
    def is_public(self) -> bool:
        return bool(self.server_name)

    def template_settings(self) -> dict[str, Any]:
        listen_prefix = f"{self.listen_address}:" if self.listen_address else ""
        if ":" in self.listen_address:  # IPv6 literal
            listen_prefix = f"[{self.listen_address}]:"
        https_suffix = "" if self.https_port == 443 else f":{self.https_port}"
        return {
            **asdict(self),
            "server_names": self.server_name or "_",
            "listen_prefix": listen_prefix,
            "https_url_suffix": https_suffix,
        }


def validate_site(site: NginxSite) -> None:
    """Name the first setting nginx would reject or that would make the site unsafe."""
    if site.server_name and not _SERVER_NAME.match(site.server_name):
        raise ConfigError(f"nginx_server_name '{site.server_name}' is not a host name like islets.example.org.")
    for name in ("http_port", "https_port", "proxy_timeout_s", "hsts_max_age_s"):
        value = getattr(site, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"nginx_{name} must be a whole number, got {value!r}.")
    for name in ("http_port", "https_port"):
        if not 1 <= getattr(site, name) <= 65535:
            raise ConfigError(f"nginx_{name} must be a port between 1 and 65535, got {getattr(site, name)}.")
    if site.http_port == site.https_port:
        raise ConfigError(f"nginx_http_port and nginx_https_port are both {site.http_port}; give HTTPS its own port.")
    for name in ("frontend_upstream", "backend_upstream", "status_page_upstream"):
        if name == "status_page_upstream" and not site.status_page_upstream:
            continue
        if not _UPSTREAM.match(str(getattr(site, name))):
            raise ConfigError(f"nginx_{name} must be host:port (e.g. 127.0.0.1:8080), got '{getattr(site, name)}'.")
    if not _SIZE.match(str(site.client_max_body_size)):
        raise ConfigError(
            f"nginx_client_max_body_size must be a size like 200m or 1g, got '{site.client_max_body_size}'."
        )
    for name in ("ssl_certificate", "ssl_certificate_key", "acme_webroot"):
        if not str(getattr(site, name)).startswith("/"):
            raise ConfigError(f"nginx_{name} must be an absolute path, got '{getattr(site, name)}'.")
    if site.proxy_timeout_s < 1:
        raise ConfigError("nginx_proxy_timeout_s must be at least 1 second.")


def site_from_variables(variables: dict[str, Any]) -> NginxSite:
    """Build the site from inventory-style variables (`nginx_<field>`); unknown ones are named."""
    known = {field.name for field in fields(NginxSite)}
    values: dict[str, Any] = {}
    for key, value in variables.items():
        if not key.startswith(VARIABLE_PREFIX):
            continue
        name = key[len(VARIABLE_PREFIX) :]
        if name not in known:
            continue  # other nginx_* variables belong to the playbook (nginx_remove_default_site, ...)
        values[name] = value if value is not None else ""
    if isinstance(values.get("client_max_body_size"), int):
        values["client_max_body_size"] = f"{values['client_max_body_size']}m"
    return NginxSite(**values)


def letsencrypt_paths(server_name: str) -> tuple[str, str]:
    """Where certbot puts the certificate and key of `server_name`."""
    return f"{LETSENCRYPT_LIVE_DIR}/{server_name}/fullchain.pem", f"{LETSENCRYPT_LIVE_DIR}/{server_name}/privkey.pem"


def render_site(site: NginxSite) -> str:
    """The text of /etc/nginx/conf.d/isletnet.conf for `site`, with the security headers every
    part of IsletNet sends (services/common/security-headers.conf)."""
    return render_template("nginx", "isletnet.conf.j2", {"site": site.template_settings(),
                                                         "security_headers": SECURITY_HEADERS_FILE.read_text()})
