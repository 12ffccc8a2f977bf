"""The rendered host nginx site, served by the real nginx binary over real HTTPS on loopback:
routes, redirect, TLS versions, headers, ACME location, large uploads and 413 above the limit."""

from __future__ import annotations

import socket
import ssl
import warnings
from pathlib import Path

import pytest
import requests
from cryptography.utils import CryptographyDeprecationWarning

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from isletops.errors import ConfigError
from isletops.nginx import NginxSite, render_site
from monitors.daemon import MonitorDaemon
from tests.fixtures.loopback_http import QuietHandler, serve_on_loopback
from tests.fixtures.provision import nginx_check, nginx_test_config
from tests.fixtures.security_headers import SECURITY_HEADERS as EDGE_SECURITY_HEADERS
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

LIMIT_MB = 4
# The edge's headers (one place: tests/integration/test_frontend.py) plus HSTS, which only TLS can send.
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    **EDGE_SECURITY_HEADERS,
}


@pytest.fixture
def site(nginx_runner, loopback_upstreams, self_signed_certificate, tmp_path: Path) -> dict:
    cert, key = self_signed_certificate
    http_port, https_port = free_port(), free_port()
    webroot = tmp_path / "acme"
    (webroot / ".well-known/acme-challenge").mkdir(parents=True)
    (webroot / ".well-known/acme-challenge/token-123").write_text("token-123.thumbprint")
    settings = NginxSite(
        listen_address="127.0.0.1",
        http_port=http_port,
        https_port=https_port,
        frontend_upstream=loopback_upstreams["frontend"].address,
        backend_upstream=loopback_upstreams["backend"].address,
        ssl_certificate=str(cert),
        ssl_certificate_key=str(key),
        client_max_body_size=f"{LIMIT_MB}m",
        proxy_timeout_s=120,
        acme_webroot=str(webroot),
    )
    nginx = nginx_runner(render_site(settings), [http_port, https_port])
    return {
        "https": f"https://127.0.0.1:{https_port}",
        "http": f"http://127.0.0.1:{http_port}",
        "https_port": https_port,
        "cert": str(cert),
        "nginx": nginx,
        **loopback_upstreams,
    }


def test_rendered_site_passes_nginx_t(tmp_path: Path, self_signed_certificate) -> None:
    cert, key = self_signed_certificate
    text = render_site(NginxSite(server_name="islets.example.org", ssl_certificate=str(cert),
                                 ssl_certificate_key=str(key), acme_webroot=str(tmp_path)))
    result = nginx_check(nginx_test_config(tmp_path / "t", text))
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_broken_certificate_path_fails_nginx_t(tmp_path: Path) -> None:
    # The check is real: nginx -t refuses a site whose certificate does not exist.
    text = render_site(NginxSite(ssl_certificate="/nonexistent/x.crt", ssl_certificate_key="/nonexistent/x.key"))
    result = nginx_check(nginx_test_config(tmp_path / "t", text))
    assert result.returncode != 0
    assert "/nonexistent/x.crt" in result.stderr


def test_root_goes_to_frontend_and_api_to_backend(site: dict) -> None:
    front = requests.get(f"{site['https']}/jobs/42?tab=table", verify=site["cert"], timeout=10)
    assert front.status_code == 200
    assert front.json()["upstream"] == "frontend"
    assert front.json()["path"] == "/jobs/42?tab=table"

    api = requests.get(f"{site['https']}/api/jobs?limit=5", verify=site["cert"], timeout=10)
    assert api.json()["upstream"] == "backend"
    assert api.json()["path"] == "/api/jobs?limit=5"  # the /api prefix reaches the backend unchanged
    assert api.json()["forwarded_proto"] == "https"
    assert api.json()["forwarded_for"] == "127.0.0.1"
    assert requests.get(f"{site['https']}/api", verify=site["cert"], timeout=10).json()["upstream"] == "backend"


def test_http_redirects_to_https_with_path_and_query(site: dict) -> None:
    response = requests.get(f"{site['http']}/results/7?x=1", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://127.0.0.1:{site['https_port']}/results/7?x=1"
    assert not site["frontend"].requests  # nothing proxied over plain HTTP


def test_acme_challenge_is_served_over_plain_http(site: dict) -> None:
    response = requests.get(f"{site['http']}/.well-known/acme-challenge/token-123", allow_redirects=False, timeout=10)
    assert response.status_code == 200
    assert response.text == "token-123.thumbprint"


@pytest.mark.parametrize("path", ["/", "/api/health"])
def test_security_headers_on_every_route(site: dict, path: str) -> None:
    response = requests.get(f"{site['https']}{path}", verify=site["cert"], timeout=10)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "nginx/" not in response.headers.get("Server", "")  # server_tokens off


def _handshake(port: int, version: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")  # let the *client* offer old protocols; the server must refuse
    context.minimum_version = version
    context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        return tls.version() or ""


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_only_tls_1_2_and_1_3_are_accepted(site: dict) -> None:
    assert _handshake(site["https_port"], ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(site["https_port"], ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError):
            _handshake(site["https_port"], old)


def test_large_upload_is_accepted_and_streamed_to_the_backend(site: dict) -> None:
    body = b"\x89PNG" + b"\0" * ((LIMIT_MB - 1) * 1024 * 1024)
    response = requests.post(f"{site['https']}/api/jobs", data=body, verify=site["cert"], timeout=60,
                             headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200
    assert response.json()["body_bytes"] == len(body)


def test_oversize_upload_is_rejected_with_413_before_the_backend(site: dict) -> None:
    body = b"\0" * ((LIMIT_MB + 1) * 1024 * 1024)
    response = requests.post(f"{site['https']}/api/jobs", data=body, verify=site["cert"], timeout=60,
                             headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 413
    assert response.headers.get("Strict-Transport-Security")  # headers even on errors ("always")
    assert not [r for r in site["backend"].requests if r["method"] == "POST"]


def mozilla_intermediate_issues(port: int, ca_file: Path) -> dict[str, str]:
    """sslyze's scan of the server on 127.0.0.1:`port` (name: localhost), checked against
    Mozilla's intermediate profile; {} when it complies. `ca_file` is the trust store that the
    certificate's path is validated against."""
    import sslyze
    from sslyze.mozilla_tls_profile import tls_config_checker as mozilla

    location = sslyze.ServerNetworkLocation(hostname="localhost", port=port, ip_address="127.0.0.1")
    extra = sslyze.ScanCommandsExtraArguments(
        certificate_info=sslyze.CertificateInfoExtraArgument(custom_ca_file=ca_file))
    scanner = sslyze.Scanner()
    scanner.queue_scans([sslyze.ServerScanRequest(server_location=location, scan_commands_extra_arguments=extra,
                                                  scan_commands=mozilla.SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER)])
    with warnings.catch_warnings():  # sslyze's bundled trust stores hold a root with a serial number <= 0
        warnings.filterwarnings("ignore", "Parsed a serial number", CryptographyDeprecationWarning)
        (result,) = scanner.get_results()
    profile = mozilla.MozillaTlsConfiguration.get(mozilla.TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        mozilla.check_server_against_tls_configuration(result, profile)
    except mozilla.ServerNotCompliantWithTlsConfiguration as error:
        return error.issues
    return {}


def _ca_issued_site(nginx_runner, upstreams: dict, issued, tmp_path: Path, without: str = "") -> int:
    """Serve the rendered site with the CA-issued certificate, less the line `without`; its HTTPS port."""
    https_port = free_port()
    settings = NginxSite(listen_address="127.0.0.1", http_port=free_port(), https_port=https_port,
                         frontend_upstream=upstreams["frontend"].address,
                         backend_upstream=upstreams["backend"].address,
                         ssl_certificate=str(issued.certificate), ssl_certificate_key=str(issued.key),
                         acme_webroot=str(tmp_path))
    text = render_site(settings)
    assert not without or without in text
    nginx_runner(text.replace(without, "") if without else text, [https_port])
    return https_port


def test_tls_meets_mozillas_intermediate_profile(nginx_runner, loopback_upstreams, ca_issued_certificate,
                                                 tmp_path: Path) -> None:
    # Every check of sslyze's Mozilla checker runs: protocols, ciphers, key exchange groups and
    # their sizes, known vulnerabilities, and the certificate (path validated against the test's
    # own CA, which stands in for Let's Encrypt; key type and size, signature, lifetime). None is
    # left out. HSTS is not checked: sslyze itself has that check disabled.
    https_port = _ca_issued_site(nginx_runner, loopback_upstreams, ca_issued_certificate, tmp_path)
    assert mozilla_intermediate_issues(https_port, ca_issued_certificate.ca) == {}


def test_the_profile_check_finds_nginxs_default_curves(nginx_runner, loopback_upstreams, ca_issued_certificate,
                                                       tmp_path: Path) -> None:
    # The check above is real: the same site without ssl_ecdh_curve offers X448 and secp521r1.
    https_port = _ca_issued_site(nginx_runner, loopback_upstreams, ca_issued_certificate, tmp_path,
                                 without="    ssl_ecdh_curve X25519:prime256v1:secp384r1;\n")
    issues = mozilla_intermediate_issues(https_port, ca_issued_certificate.ca)
    assert list(issues) == ["tls_curves"], issues
    assert "X448" in issues["tls_curves"] and "secp521r1" in issues["tls_curves"]


class _SessionCheck(QuietHandler):
    """The backend's GET /api/auth/session as the host nginx sees it: 200 for a valid session
    cookie, 401 otherwise (the real endpoint is tested in services/backend/tests/test_auth.py)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        signed_in = self.path == "/api/auth/session" and "isletnet_session=valid" in self.headers.get("Cookie", "")
        body = b'{"username": "tech"}' if signed_in else b'{"error": "Sign in first."}'
        self.send_response(200 if signed_in else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_the_status_page_is_shown_to_signed_in_people_only(nginx_runner, loopback_upstreams, self_signed_certificate,
                                                          tmp_path: Path) -> None:
    cert, key = self_signed_certificate
    monitoring = MonitoringConfig(probes={name: {"enabled": False} for name in
                                          ("containers", "http", "e2e", "gpu", "tls", "pruner", "disk")})
    daemon = MonitorDaemon(SiteConfig(source=None, monitoring=monitoring), InstanceConfig("h5host", tmp_path / "i"),
                           port=0)
    daemon.start()
    try:
        with serve_on_loopback(_SessionCheck) as backend:
            http_port, https_port = free_port(), free_port()
            settings = NginxSite(
                listen_address="127.0.0.1", http_port=http_port, https_port=https_port,
                frontend_upstream=loopback_upstreams["frontend"].address,
                backend_upstream=f"127.0.0.1:{backend.server_address[1]}",
                ssl_certificate=str(cert), ssl_certificate_key=str(key),
                status_page_upstream=f"127.0.0.1:{daemon.port}",
            )  # fmt: skip
            nginx_runner(render_site(settings), [http_port, https_port])
            base = f"https://127.0.0.1:{https_port}"
            anonymous = requests.get(f"{base}/monitor/", verify=str(cert), timeout=10, allow_redirects=False)
            assert anonymous.status_code == 302 and anonymous.headers["Location"].endswith("/")
            wrong = requests.get(f"{base}/monitor/status", verify=str(cert), timeout=10, allow_redirects=False,
                                 cookies={"isletnet_session": "forged"})
            assert wrong.status_code == 302
            cookies = {"isletnet_session": "valid"}
            page = requests.get(f"{base}/monitor/", verify=str(cert), timeout=10, cookies=cookies)
            assert page.status_code == 200 and "h5host" in page.text and 'href="status.css"' in page.text
            assert page.headers["Content-Security-Policy"].count("style-src 'self'") == 1  # the host's, once
            style = requests.get(f"{base}/monitor/status.css", verify=str(cert), timeout=10, cookies=cookies)
            assert style.status_code == 200 and style.headers["Content-Type"].startswith("text/css")
            status = requests.get(f"{base}/monitor/status", verify=str(cert), timeout=10, cookies=cookies).json()
            assert status["instance"] == "h5host"
            assert requests.get(f"{base}/monitor", verify=str(cert), timeout=10, cookies=cookies,
                                allow_redirects=False).status_code == 301
    finally:
        daemon.stop()


def test_without_a_status_page_upstream_there_is_no_monitor_location() -> None:
    assert "/monitor" not in render_site(NginxSite())
    assert "auth_request /_isletnet_session;" in render_site(NginxSite(status_page_upstream="127.0.0.1:9110"))
    with pytest.raises(ConfigError, match="nginx_status_page_upstream must be host:port"):
        NginxSite(status_page_upstream="http://127.0.0.1:9110")
