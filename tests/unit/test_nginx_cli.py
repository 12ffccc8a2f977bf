"""`isletops render nginx`: the instance's ports and upload limit flow into the site; --set wins."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from isletops.cli import main


def _config(tmp_path: Path, **extra: object) -> Path:
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({
        "instances_root": str(tmp_path / "instances"),
        "instances": {"prod": {"http_port": 9080, "api_port": 9081, "max_upload_mb": 300,
                               "public_url": "https://islets.example.org", **extra}},
    }))
    return config


def test_render_nginx_uses_the_instance_settings(tmp_path: Path) -> None:
    config = _config(tmp_path, publish_api_port=True)
    result = CliRunner().invoke(main, ["--config", str(config), "-i", "prod", "render", "nginx"])
    assert result.exit_code == 0, result.output
    assert "server 127.0.0.1:9080;" in result.output
    assert "server 127.0.0.1:9081;" in result.output
    assert "client_max_body_size 300m;" in result.output
    assert "server_name islets.example.org;" in result.output
    assert "proxy_read_timeout 600s;" in result.output  # the instance's default proxy_timeout_s


def test_render_nginx_uses_the_instance_proxy_timeout(tmp_path: Path) -> None:
    config = _config(tmp_path, proxy_timeout_s=900)
    result = CliRunner().invoke(main, ["--config", str(config), "-i", "prod", "render", "nginx"])
    assert result.exit_code == 0, result.output
    assert "proxy_read_timeout 900s;" in result.output and "send_timeout 900s;" in result.output


def test_render_nginx_sends_api_to_the_public_port_when_the_backend_port_is_not_published(tmp_path: Path) -> None:
    config = _config(tmp_path)  # publish_api_port: false is the default
    result = CliRunner().invoke(main, ["--config", str(config), "-i", "prod", "render", "nginx"])
    assert result.exit_code == 0, result.output
    assert "127.0.0.1:9081" not in result.output
    assert result.output.count("server 127.0.0.1:9080;") == 2


def test_render_nginx_set_overrides_and_writes_a_file(tmp_path: Path) -> None:
    output = tmp_path / "isletnet.conf"
    result = CliRunner().invoke(main, [
        "--config", str(_config(tmp_path)), "-i", "prod", "render", "nginx",
        "--set", "nginx_server_name=", "--set", "nginx_https_port=8443", "-o", str(output),
    ])
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert "server_name _;" in text
    assert "listen 8443 ssl http2;" in text


def test_render_nginx_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(_config(tmp_path)), "render", "nginx",
                                       "--set", "nginx_backend_upstream=http://x"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "isletops: error: nginx_backend_upstream must be host:port (e.g. 127.0.0.1:8080), got 'http://x'."
    )


def test_render_nginx_rejects_a_set_without_value(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(_config(tmp_path)), "render", "nginx", "--set", "oops"])
    assert result.exit_code == 2
    assert "--set 'oops' is not key=value." in result.output
