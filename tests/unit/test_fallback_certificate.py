"""The provisioning playbook's self-signed fallback certificate: its task's own command, run here
with the real openssl, makes a server certificate as trust stores expect one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jinja2
import yaml

from tests.fixtures.provision import server_certificate_problems

NGINX_TASKS = Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "isletnet" / "tasks" / "nginx.yml"


def fallback_certificate_command(certificate: Path, key: Path, server_name: str, fqdn: str) -> list[str]:
    """The argv of the playbook's task, rendered as ansible would for these values."""
    task = next(task for task in yaml.safe_load(NGINX_TASKS.read_text())
                if task["name"] == "Create a self-signed certificate")
    environment = jinja2.Environment(autoescape=False)  # noqa: S701 - command arguments, not HTML
    site = {"server_name": server_name, "ssl_certificate": str(certificate), "ssl_certificate_key": str(key)}
    values = {"isletnet_site": site, "ansible_fqdn": fqdn, "inventory_hostname": "gpu-server-1"}
    values["isletnet_self_signed_name"] = environment.from_string(task["vars"]["isletnet_self_signed_name"]).render(
        values)
    return [environment.from_string(argument).render(values) for argument in task["ansible.builtin.command"]["argv"]]


def test_the_fallback_certificate_is_a_server_certificate_for_a_year_at_most(tmp_path: Path) -> None:
    certificate, key = tmp_path / "isletnet.crt", tmp_path / "isletnet.key"
    subprocess.run(fallback_certificate_command(certificate, key, "", "lab-server.hospital.lan"),
                   check=True, capture_output=True)
    assert server_certificate_problems(certificate.read_bytes(), "lab-server.hospital.lan") == []


def test_a_public_name_goes_into_the_fallback_certificate(tmp_path: Path) -> None:
    certificate, key = tmp_path / "isletnet.crt", tmp_path / "isletnet.key"
    subprocess.run(fallback_certificate_command(certificate, key, "islets.example.org", "gpu1"),
                   check=True, capture_output=True)
    assert server_certificate_problems(certificate.read_bytes(), "islets.example.org") == []


def test_the_check_finds_what_the_old_fallback_certificate_lacked(tmp_path: Path) -> None:
    # The certificate the playbook made before (CA:TRUE by openssl's defaults, 825 days): the
    # check above would have caught every one of its faults.
    old, key = tmp_path / "old.crt", tmp_path / "old.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825", "-subj", "/CN=gpu1",
                    "-keyout", str(key), "-out", str(old)], check=True, capture_output=True)
    assert server_certificate_problems(old.read_bytes(), "gpu1") == [
        "basicConstraints is not a critical CA:FALSE", "keyUsage lacks digitalSignature or allows certificate signing",
        "extendedKeyUsage lacks serverAuth", "subjectAltName lacks DNS:gpu1", "it lives 825 days"]
