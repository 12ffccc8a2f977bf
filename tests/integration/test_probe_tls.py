"""The tls probe against a real TLS server on loopback with short-lived self-signed certificates."""

from __future__ import annotations

import contextlib
import itertools
import ssl
import time
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors import probes, runner
from monitors.probes import tls
from monitors.result import ProbeContext, Status
from tests.fixtures.loopback_http import QuietHandler, serve_on_loopback
from tests.fixtures.mail import make_self_signed_cert

pytestmark = pytest.mark.integration


class Hello(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.end_headers()


@pytest.fixture
def tls_server(tmp_path: Path):
    """Start a TLS server with a certificate valid for `days` (negative: expired); returns (url, ca_file)."""
    numbers = itertools.count()
    with contextlib.ExitStack() as servers:

        def start(days: float, host: str = "127.0.0.1") -> tuple[str, str]:
            cert, key = make_self_signed_cert(tmp_path / f"cert{next(numbers)}", host, days=days, not_before_days=10)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            server = servers.enter_context(serve_on_loopback(Hello, tls=context))
            return server.url, str(cert)

        yield start


def check(tmp_path: Path, url: str, ca_file: str = "") -> object:
    monitoring = MonitoringConfig(probes={"tls": {"ca_file": ca_file}})
    config = SiteConfig(source=None, monitoring=monitoring)
    instance = InstanceConfig("h5tls", tmp_path / "h5tls", public_url=url)
    return tls.run(ProbeContext(config, instance, probes.options("tls", monitoring)))


@pytest.mark.parametrize(
    ("days", "status", "phrase"),
    [(30, Status.OK, "expires in 30.0 days"), (10, Status.WARNING, "expires in 10.0 days"),
     (2, Status.CRITICAL, "expires in 2.0 days"), (-1, Status.CRITICAL, "expired on")],
)  # fmt: skip
def test_expiry_thresholds(tmp_path: Path, tls_server, days: float, status: Status, phrase: str) -> None:
    url, ca_file = tls_server(days)
    result = check(tmp_path, url, ca_file)
    assert result.status is status and phrase in result.message, result.message
    assert result.value == pytest.approx(days, abs=0.01)
    expiry, remaining = result.measurements  # a timestamp for Prometheus, seconds left for Nagios
    assert expiry.quantity == "tls_certificate_expiry"
    assert expiry.value == pytest.approx(time.time() + days * 86400, abs=120)
    assert remaining.quantity == "tls_certificate_remaining"
    assert (remaining.warn, remaining.crit) == (14 * 86400, 3 * 86400)


def test_untrusted_certificate_is_critical_and_still_reports_expiry(tmp_path: Path, tls_server) -> None:
    url, _ = tls_server(30)
    result = check(tmp_path, url)  # not told to trust the self-signed CA
    assert result.status is Status.CRITICAL and "certificate not accepted: self-signed certificate" in result.message
    assert result.value == pytest.approx(30, abs=0.01)


def test_wrong_host_is_critical(tmp_path: Path, tls_server) -> None:
    url, ca_file = tls_server(30, host="islets.hospital.test")
    result = check(tmp_path, url, ca_file)
    assert result.status is Status.CRITICAL and "certificate not accepted" in result.message
    assert "mismatch" in result.message or "match" in result.message


def test_nothing_listening_is_critical(tmp_path: Path) -> None:
    result = check(tmp_path, "https://127.0.0.1:1")
    assert result.status is Status.CRITICAL and result.message.startswith("TLS handshake with 127.0.0.1:1 failed")


def test_probe_runs_only_for_https_and_says_why_otherwise(tmp_path: Path) -> None:
    config = SiteConfig(source=None)
    instance = InstanceConfig("h5tls", tmp_path / "h5tls", public_url="http://127.0.0.1:8080")
    assert "tls" not in runner.default_probes(config, instance)
    result = check(tmp_path, "http://127.0.0.1:8080")
    assert result.status is Status.UNKNOWN and "no https public URL" in result.message
