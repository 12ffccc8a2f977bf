"""Settings of the host nginx site: defaults, inventory variables, validation, rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from isletops.errors import ConfigError
from isletops.nginx import NginxSite, letsencrypt_paths, render_site, site_from_variables


def test_defaults_render_a_site_for_any_name_on_standard_ports() -> None:
    text = render_site(NginxSite())
    assert "server_name _;" in text
    assert "listen 80;" in text
    assert "listen 443 ssl http2;" in text
    assert "return 301 https://$host$request_uri;" in text  # no port suffix on 443
    # /api/ goes to the instance's public port too (its frontend proxies it): publish_api_port is off by default.
    assert text.count("server 127.0.0.1:8080;") == 2
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "client_max_body_size 200m;" in text


def test_public_name_listen_address_and_ports() -> None:
    site = NginxSite(server_name="islets.example.org", listen_address="10.0.0.5", http_port=8080, https_port=8443,
                     frontend_upstream="127.0.0.1:9080", backend_upstream="127.0.0.1:9081")
    text = render_site(site)
    assert site.is_public
    assert "server_name islets.example.org;" in text
    assert "listen 10.0.0.5:8080;" in text
    assert "listen 10.0.0.5:8443 ssl http2;" in text
    assert "return 301 https://$host:8443$request_uri;" in text


def test_ipv6_listen_address_is_bracketed() -> None:
    assert "listen [::1]:443 ssl http2;" in render_site(NginxSite(listen_address="::1"))


def test_site_from_inventory_variables_ignores_other_variables() -> None:
    site = site_from_variables({
        "nginx_server_name": "islets.example.org",
        "nginx_client_max_body_size": 500,
        "nginx_remove_default_site": True,  # a playbook switch, not a site setting
        "isletnet_instance": "prod",
    })
    assert site.server_name == "islets.example.org"
    assert site.client_max_body_size == "500m"


def test_letsencrypt_paths() -> None:
    assert letsencrypt_paths("a.example.org") == (
        "/etc/letsencrypt/live/a.example.org/fullchain.pem",
        "/etc/letsencrypt/live/a.example.org/privkey.pem",
    )


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"server_name": "bad name;"}, "nginx_server_name 'bad name;' is not a host name"),
        ({"http_port": 0}, "nginx_http_port must be a port"),
        ({"https_port": "443"}, "nginx_https_port must be a whole number"),
        ({"http_port": 443}, "give HTTPS its own port"),
        ({"backend_upstream": "http://backend:8000"}, "nginx_backend_upstream must be host:port"),
        ({"client_max_body_size": "lots"}, "nginx_client_max_body_size must be a size"),
        ({"ssl_certificate": "site.crt"}, "nginx_ssl_certificate must be an absolute path"),
        ({"proxy_timeout_s": 0}, "at least 1 second"),
    ],
)
def test_invalid_settings_are_named(settings: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        NginxSite(**settings)
    assert fragment in str(caught.value)


def _added_headers(text: str) -> list[tuple[str, str]]:
    return sorted(re.findall(r'add_header (\S+) "(.*?)" always;', text))


def test_one_list_of_security_headers_for_every_nginx() -> None:
    # services/common/security-headers.conf owns the list: the edge and frontend images include it (the
    # frontend because a Kubernetes Ingress reaches it directly) and add no header of their own;
    # the host's site puts it in and adds only HSTS. Each drops the copies of the hop behind it.
    root = Path(__file__).resolve().parents[2]
    shared_text = (root / "services" / "common" / "security-headers.conf").read_text()
    shared = _added_headers(shared_text)
    assert [name for name, _ in shared] == sorted(["Content-Security-Policy", "X-Content-Type-Options",
                                                   "X-Frame-Options", "Referrer-Policy", "Permissions-Policy"])
    assert sorted(re.findall(r"proxy_hide_header (\S+);", shared_text)) == [name for name, _ in shared]
    for image in ("edge", "frontend"):
        text = (root / "services" / image / "nginx.conf").read_text()
        assert "include /etc/nginx/isletnet-security-headers.conf;" in text, image
        assert "add_header" not in text and "proxy_hide_header" not in text, image
        dockerfile = (root / "services" / image / "Dockerfile").read_text()
        copy = "COPY services/common/security-headers.conf /etc/nginx/isletnet-security-headers.conf"
        assert copy in dockerfile, image
    host_text = render_site(NginxSite())
    host = _added_headers(host_text)
    assert [header for header in host if header[0] != "Strict-Transport-Security"] == shared
    assert sorted(re.findall(r"proxy_hide_header (\S+);", host_text)) == [name for name, _ in shared]
    policy = dict(shared)["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy and "frame-ancestors 'none'" in policy
