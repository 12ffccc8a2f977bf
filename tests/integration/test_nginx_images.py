"""The edge and frontend images put the instance's PROXY_TIMEOUT_S (from its .env, through
compose) into their nginx config at start (docker/nginx-start.sh), and refuse a bad value with a
sentence instead of starting an nginx with a timeout nobody asked for."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from tests.fixtures.stack import TEST_LABEL_KEY

pytestmark = pytest.mark.integration

NGINX_IMAGES = ("edge", "frontend")
RENDERED = "/var/lib/isletnet/nginx/nginx.conf"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check)


def running_config(image: str, *env: str) -> str:
    """`nginx -T` of a container of `image` started with `env` (KEY=VALUE)."""
    name = f"h13-nginx-{uuid.uuid4().hex[:8]}"
    options = [option for pair in env for option in ("-e", pair)]
    docker("run", "-d", "--name", name, "--label", f"{TEST_LABEL_KEY}=1", *options, image)
    try:
        deadline = time.monotonic() + 30
        while True:
            shown = docker("exec", name, "nginx", "-T", "-c", RENDERED, check=False)
            if shown.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert shown.returncode == 0, shown.stderr + docker("logs", name, check=False).stderr
        return shown.stdout
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.parametrize("component", NGINX_IMAGES)
def test_the_instances_proxy_timeout_reaches_nginx(service_images: dict[str, str], component: str) -> None:
    config = running_config(service_images[component], "PROXY_TIMEOUT_S=900")
    assert "proxy_read_timeout 900s;" in config and "proxy_send_timeout 900s;" in config
    assert "${" not in config
    assert "proxy_read_timeout 600s;" in running_config(service_images[component])  # the default


@pytest.mark.parametrize("component", NGINX_IMAGES)
@pytest.mark.parametrize("value", ["15m", "0", "-1", "9; root /"])
def test_a_bad_proxy_timeout_stops_the_container_with_a_sentence(service_images: dict[str, str], component: str,
                                                                 value: str) -> None:
    run = docker("run", "--rm", "--label", f"{TEST_LABEL_KEY}=1", "-e", f"PROXY_TIMEOUT_S={value}",
                 service_images[component], check=False)
    assert run.returncode == 78, run.stderr
    assert run.stderr.strip() == (f"PROXY_TIMEOUT_S must be a whole number of seconds above 0, not '{value}'; "
                                  "fix proxy_timeout_s in the instance's settings.")
