"""The provisioning playbook against a real target container (isletnet-target, reached over ssh
on a loopback port), checked with pytest-testinfra. One container for the whole module, with
systemd as PID 1 and Docker Engine installed but stopped and disabled; the tests run in order:
--check on the fresh host, first run (engine started, isletops installed), idempotent second
run, a changed daemon.json (exactly one engine restart), the GPU branch with an engine managed
by someone else, certbot failure, certbot success against a real ACME server (pebble), invalid
daemon.json. Fast bad-input cases (missing variable, unreachable host) go through the real CLI.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import requests
import testinfra
import yaml
from click.testing import CliRunner

from isletops.cli import main
from isletops.provision import ProvisionResult, run_provision
from tests.fixtures.provision import Target, server_certificate_problems
from tests.fixtures.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

HOST = "islet-target-1"
EXISTING_DAEMON_JSON = {
    "registry-mirrors": ["https://mirror.hospital.lan"],
    "insecure-registries": ["10.1.2.3:5000"],
    "log-opts": {"compress": "true"},
    "debug": True,
}
BASE_VARS = {
    "isletnet_instance": "prod",
    "docker_engine_managed": True,
    "docker_data_root": "/srv/docker",
    "isletnet_env": {"API_URL": "https://islets.test/api"},
    "isletops_mail": {"smtp_host": "mail.hospital.lan", "smtp_port": 25, "sender": "isletops@hospital.lan",
                      "recipients": ["oncall@hospital.lan"]},
    "probe_schedule": "*/3 * * * *",
    "nginx_proxy_timeout_s": 900,
}


def write_inventory(directory: Path, target: Target, **overrides) -> Path:
    host_vars = target.host_vars()
    group_vars = {**BASE_VARS, **overrides}
    for key in [key for key, value in group_vars.items() if value is None]:
        del group_vars[key]  # None: leave the variable out of the inventory
    if "ansible_port" in overrides:
        host_vars["ansible_port"] = group_vars.pop("ansible_port")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(
        yaml.safe_dump({"isletnet": {"hosts": {HOST: host_vars}, "vars": group_vars}}, sort_keys=False)
    )
    return directory


@pytest.fixture(scope="module")
def target(make_target) -> Target:
    target = make_target()
    target.write("/etc/docker/daemon.json", json.dumps(EXISTING_DAEMON_JSON, indent=4))
    return target


@pytest.fixture(scope="module")
def host(target: Target):
    return testinfra.get_host(f"docker://{target.name}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("provision")


def provision(workdir: Path, target: Target, name: str, *, tags=(), check=False, diff=False, gather=False,
              **overrides) -> ProvisionResult:
    """One run. `gather`: isletops provision gathers the isletops wheels itself (into this module's
    folder); otherwise the run reuses that set, so other work on this checkout between runs (a
    changed source file is a new isletops wheel) cannot make a second run install a new build."""
    inventory = write_inventory(workdir / name, target, **overrides)
    wheels = workdir / "wheels"
    return run_provision(inventory, check=check, diff=diff, tags=tags, state_dir=workdir / "state",
                         wheels_dir=wheels, extra_vars=None if gather else {"isletops_wheels_dir": str(wheels)})


def daemon_json(host) -> dict:
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def engine_pid(host) -> int:
    return int(host.check_output("systemctl show docker.service -p MainPID --value"))


def engine_starts(host) -> int:
    """How many times systemd has started Docker Engine since the target booted."""
    return int(host.run("journalctl -u docker.service -o cat | grep -c '^Started docker.service'").stdout.strip())


def engine_info(host) -> dict:
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


def container_log_config(host, name: str) -> dict:
    """The log settings Docker gives a new container (created, never started: no image needed
    beyond an empty one)."""
    host.run(f"docker rm -f {name}")
    if host.run("docker image inspect isletnet-empty:1").rc != 0:
        host.check_output("tar -cf - -T /dev/null | docker import - isletnet-empty:1")
    host.check_output(f"docker create --name {name} isletnet-empty:1 /none")
    return json.loads(host.check_output(f"docker inspect -f '{{{{json .HostConfig.LogConfig}}}}' {name}"))


def test_check_mode_on_a_fresh_host_changes_nothing(workdir: Path, target: Target, host) -> None:
    before = host.file("/etc/docker/daemon.json").content_string
    result = provision(workdir, target, "check", check=True, diff=True, gather=True)
    assert result.succeeded, result.error_sentence()
    assert result.hosts[HOST].changed > 0  # it reports what it would do ...
    assert host.file("/etc/docker/daemon.json").content_string == before  # ... and does nothing
    assert not host.file("/home/isletnet").exists
    assert not host.file("/etc/cron.d/isletops-probe-prod").exists
    assert not host.file("/etc/nginx/conf.d/isletnet.conf").exists
    assert not host.user("isletnet").exists
    assert not host.file("/opt/isletops").exists
    assert not host.service("docker").is_running and not host.service("docker").is_enabled
    stdout = (result.artifacts_dir / "stdout").read_text()
    assert '"data-root": "/srv/docker"' in stdout  # --diff shows the daemon.json change


def test_first_run_provisions_the_host(workdir: Path, target: Target, host) -> None:
    # What the playbook used to make (openssl's CA defaults, 825 days): retired and made again.
    target.exec("sh", "-c", "mkdir -p /etc/ssl/isletnet && openssl req -x509 -newkey rsa:2048 -nodes -days 825 "
                "-subj /CN=old -keyout /etc/ssl/isletnet/isletnet.key -out /etc/ssl/isletnet/isletnet.crt")
    result = provision(workdir, target, "first", gather=True)
    assert result.succeeded, result.error_sentence()
    assert result.hosts[HOST].changed > 0
    assert result.hosts[HOST].docker_restarts == 1  # daemon.json changed: one restart, however many keys
    assert (result.artifacts_dir / "status").read_text() == "successful"
    assert result.warnings == []

    # Docker Engine: enabled, running, and running with daemon.json's settings
    assert host.service("docker").is_enabled and host.service("docker").is_running
    info = engine_info(host)
    assert info["DockerRootDir"] == "/srv/docker"
    assert info["LoggingDriver"] == "json-file"
    assert info["RegistryConfig"]["Mirrors"] == ["https://mirror.hospital.lan/"]  # a key we do not own, kept
    assert container_log_config(host, "log-check") == {
        "Type": "json-file", "Config": {"compress": "true", "max-file": "3", "max-size": "10m"}}
    host.check_output("docker network create pool-check")
    subnet = host.check_output("docker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' pool-check")
    assert subnet.startswith("172.30.") and subnet.endswith("/24")  # default-address-pools in effect
    host.check_output("docker network rm pool-check")
    assert not host.file("/var/lib/isletops/docker-restart-required").exists

    settings = daemon_json(host)
    for key, value in EXISTING_DAEMON_JSON.items():
        if key != "log-opts":
            assert settings[key] == value, key  # unknown keys kept
    assert settings["data-root"] == "/srv/docker"
    assert settings["default-address-pools"] == [{"base": "172.30.0.0/16", "size": 24}]
    assert settings["log-driver"] == "json-file"
    assert settings["log-opts"] == {"compress": "true", "max-size": "10m", "max-file": "3"}
    assert "default-runtime" not in settings and "runtimes" not in settings  # no GPU here
    assert host.file("/etc/docker/daemon.json").mode == 0o644

    user = host.user("isletnet")
    assert user.uid == 10001 and user.home == "/home/isletnet"
    instance = host.file("/home/isletnet/prod")
    assert instance.is_directory and instance.user == "isletnet" and instance.mode == 0o750
    for sub in ("data", "state", "logs"):
        assert host.file(f"/home/isletnet/prod/{sub}").is_directory
    env = host.file("/home/isletnet/prod/.env")
    assert env.mode == 0o600 and env.user == "isletnet"
    assert "API_URL=https://islets.test/api" in env.content_string
    assert "LOCAL_DATA_DIR=/home/isletnet/prod/data" in env.content_string
    site_config = yaml.safe_load(host.file("/home/isletnet/prod/isletops.yml").content_string)
    assert site_config["mail"]["recipients"] == ["oncall@hospital.lan"]
    assert site_config["default_instance"] == "prod"
    assert site_config["instances"]["prod"]["proxy_timeout_s"] == 900  # reaches the edge and frontend (.env)

    cron = host.file("/etc/cron.d/isletops-probe-prod")
    assert cron.mode == 0o644 and cron.user == "root"
    assert ("*/3 * * * * isletnet /opt/isletops/bin/isletops --config /home/isletnet/prod/isletops.yml "
            "--instance prod probe --quiet --log /home/isletnet/prod/logs/probe.log") in cron.content_string
    assert host.service("cron").is_enabled and host.service("cron").is_running
    # isletops itself, where the cron entry looks for it, runnable by the cron job's user
    assert host.file("/opt/isletops/bin/isletops").mode & 0o111
    probe_help = host.run("runuser -u isletnet -- /opt/isletops/bin/isletops --config /home/isletnet/prod/isletops.yml "
                          "--instance prod probe --help")
    assert probe_help.rc == 0 and "Usage:" in probe_help.stdout, probe_help.stderr
    installed = host.check_output("/opt/isletops/bin/pip list --format json")
    assert any(package["name"] == "isletops" for package in json.loads(installed))

    site = host.file("/etc/nginx/conf.d/isletnet.conf")
    assert "proxy_pass http://isletnet_backend;" in site.content_string
    assert "proxy_read_timeout 900s;" in site.content_string
    assert "ssl_certificate /etc/ssl/isletnet/isletnet.crt;" in site.content_string
    assert host.file("/etc/ssl/isletnet/isletnet.key").mode == 0o600
    certificate = target.read("/etc/ssl/isletnet/isletnet.crt").encode()
    # the container's hostname (no public name here), in a server certificate trust stores accept
    assert server_certificate_problems(certificate, "isletnet-target") == []
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    assert host.run("nginx -t").rc == 0
    assert host.process.filter(comm="nginx")
    redirect = requests.get(f"http://127.0.0.1:{target.http_port}/x", allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"].startswith("https://")


def test_second_run_changes_nothing(workdir: Path, target: Target, host) -> None:
    before = host.file("/etc/docker/daemon.json").content_string
    pid, starts = engine_pid(host), engine_starts(host)
    result = provision(workdir, target, "first")
    assert result.succeeded, result.error_sentence()
    assert result.hosts[HOST].changed == 0, result.changed_tasks
    assert result.hosts[HOST].docker_restarts == 0  # unchanged daemon.json: no restart
    assert host.file("/etc/docker/daemon.json").content_string == before
    assert (engine_pid(host), engine_starts(host)) == (pid, starts)  # the engine was not touched


def test_changed_daemon_json_restarts_docker_once(workdir: Path, target: Target, host) -> None:
    pid, starts = engine_pid(host), engine_starts(host)
    result = provision(workdir, target, "log-files", tags=["docker"], docker_log_max_file="5",
                       docker_address_pools=[{"base": "172.31.0.0/16", "size": 26}])
    assert result.succeeded, result.error_sentence()
    assert result.hosts[HOST].docker_restarts == 1  # two keys changed, one restart
    assert engine_starts(host) == starts + 1
    assert engine_pid(host) != pid
    assert container_log_config(host, "log-check")["Config"]["max-file"] == "5"
    host.check_output("docker network create pool-check")
    subnet = host.check_output("docker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' pool-check")
    assert subnet.startswith("172.31.") and subnet.endswith("/26")
    host.check_output("docker network rm pool-check")


def test_interrupted_isletops_install_is_redone(workdir: Path, target: Target, host) -> None:
    # As if pip had been killed half-way: the wheels are copied, the package is gone, no stamp.
    host.check_output("rm -rf /opt/isletops/installed-wheel.sha256 /opt/isletops/lib/python3*/site-packages/isletops")
    assert host.run("/opt/isletops/bin/isletops --help").rc != 0
    result = provision(workdir, target, "first", tags=["monitoring"])
    assert result.succeeded, result.error_sentence()
    assert "Put this build of isletops in place" in result.changed_tasks[HOST]
    assert host.run("/opt/isletops/bin/isletops probe --help").rc == 0
    assert host.file("/opt/isletops/installed-wheel.sha256").exists


def test_engine_that_ignores_daemon_json_is_reported(workdir: Path, target: Target, host) -> None:
    # A host whose Docker reads another file (dockerd --config-file in a systemd drop-in): the
    # restart succeeds, but the engine does not run with what was written.
    dropin = "/etc/systemd/system/docker.service.d/elsewhere.conf"
    target.write(dropin, "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// "
                         "--containerd=/run/containerd/containerd.sock --config-file /etc/docker/elsewhere.json\n")
    target.write("/etc/docker/elsewhere.json", "{}\n")
    host.check_output("systemctl daemon-reload")
    try:
        result = provision(workdir, target, "elsewhere", tags=["docker"], docker_log_max_file="4")
        assert not result.succeeded
        assert result.hosts[HOST].docker_restarts == 1
        assert result.error_sentence() == (
            f"Host {HOST}: Docker Engine runs with data root /var/lib/docker and log driver json-file, not "
            "/srv/docker and json-file from /etc/docker/daemon.json; see journalctl -u docker.")
    finally:
        host.run(f"rm -f {dropin} /etc/docker/elsewhere.json && systemctl daemon-reload && systemctl restart docker")
    assert engine_info(host)["DockerRootDir"] == "/srv/docker"


def test_gpu_from_inventory_adds_the_nvidia_runtime(workdir: Path, target: Target, host) -> None:
    # The engine belongs to someone else here (docker_engine_managed: false): the change is
    # recorded and reported, the running engine is left alone (it has no nvidia runtime to start with).
    pid, starts = engine_pid(host), engine_starts(host)
    result = provision(workdir, target, "gpu", tags=["docker"], gpu=True, docker_engine_managed=False)
    assert result.succeeded, result.error_sentence()
    assert result.hosts[HOST].docker_restarts == 1
    assert any("restart it to apply" in warning for warning in result.warnings), result.warnings
    assert host.file("/var/lib/isletops/docker-restart-required").exists
    assert (engine_pid(host), engine_starts(host)) == (pid, starts)
    settings = daemon_json(host)
    assert settings["default-runtime"] == "nvidia"
    assert settings["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime", "args": []}}
    assert settings["registry-mirrors"] == EXISTING_DAEMON_JSON["registry-mirrors"]
    assert settings["data-root"] == "/srv/docker"


def _served_certificate(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="islets.test") as tls:
        return ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))


def test_certbot_failure_keeps_the_site_served(workdir: Path, target: Target, host) -> None:
    # A frontend inside the target, so "served" means a real page through nginx.
    target.exec("sh", "-c", "mkdir -p /srv/front && echo islet-frontend-page > /srv/front/index.html")
    subprocess.run(["docker", "exec", "-d", target.name, "python3", "-m", "http.server", "8080", "--bind",
                    "127.0.0.1", "--directory", "/srv/front"], check=True)
    # Nothing listens on port 9 in the target: a real certbot run that fails fast, no traffic leaves.
    result = provision(workdir, target, "certbot", tags=["nginx", "certbot"], nginx_server_name="islets.test",
                       certbot_email="ops@hospital.lan", certbot_server="https://127.0.0.1:9/directory")
    assert result.succeeded, result.error_sentence()
    assert any("certbot could not get a certificate for islets.test" in warning for warning in result.warnings), \
        result.warnings
    site = host.file("/etc/nginx/conf.d/isletnet.conf").content_string
    assert "server_name islets.test;" in site
    assert "ssl_certificate /etc/ssl/isletnet/isletnet.crt;" in site  # still the self-signed one
    assert host.run("nginx -t").rc == 0
    assert host.file("/etc/letsencrypt/renewal-hooks/deploy/isletnet-reload-nginx").mode == 0o755
    page = requests.get(f"https://127.0.0.1:{target.https_port}/", verify=False, timeout=10,
                        headers={"Host": "islets.test"})
    assert page.status_code == 200 and "islet-frontend-page" in page.text
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    served = ssl.PEM_cert_to_DER_cert(_served_certificate(target.https_port))
    assert served == ssl.PEM_cert_to_DER_cert(host.file("/etc/ssl/isletnet/isletnet.crt").content_string)


def test_certbot_gets_a_certificate_from_an_acme_server(workdir: Path, target: Target, host, acme_server) -> None:
    acme = acme_server(target)
    acme_vars = {"nginx_server_name": "islets.test", "certbot_email": "ops@hospital.lan",
                 "certbot_server": acme.directory_url, "certbot_ca_bundle": str(acme.ca_bundle)}
    result = provision(workdir, target, "acme", tags=["nginx", "certbot"], **acme_vars)
    assert result.succeeded, result.error_sentence()
    assert result.warnings == []
    site = host.file("/etc/nginx/conf.d/isletnet.conf").content_string
    assert "ssl_certificate /etc/letsencrypt/live/islets.test/fullchain.pem;" in site
    assert host.run("nginx -t").rc == 0

    # nginx serves the issued certificate, and it chains to pebble's root for the name islets.test
    served = _served_certificate(target.https_port)
    issuer = subprocess.run(["openssl", "x509", "-noout", "-issuer"], input=served, capture_output=True,
                            text=True, check=True).stdout
    assert "Pebble Intermediate CA" in issuer
    context = ssl.create_default_context(cadata=acme.issuing_root())
    with socket.create_connection(("127.0.0.1", target.https_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="islets.test") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    page = requests.get(f"https://127.0.0.1:{target.https_port}/", verify=False, timeout=10,
                        headers={"Host": "islets.test"})
    assert page.status_code == 200 and "islet-frontend-page" in page.text

    # renewals: Debian's timer, enabled by the playbook, with the CA bundle in certbot.service
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    environment = host.check_output("systemctl show certbot.service -p Environment --value")
    assert "REQUESTS_CA_BUNDLE=/etc/letsencrypt/isletnet-acme-ca.pem" in environment
    # --dry-run would swap a default server for Let's Encrypt's staging one: name pebble again
    renewal = host.run(f"{environment} certbot renew --dry-run --no-random-sleep-on-renew "
                       f"--server {acme.directory_url}")
    assert renewal.rc == 0, renewal.stderr

    again = provision(workdir, target, "acme", tags=["nginx", "certbot"], **acme_vars)
    assert again.succeeded and again.hosts[HOST].changed == 0, again.changed_tasks


def test_invalid_daemon_json_stops_and_is_left_untouched(workdir: Path, target: Target, host) -> None:
    broken = '{"data-root": "/var/lib/docker",\n  "debug": true,,\n}\n'
    target.write("/etc/docker/daemon.json", broken)
    pid = engine_pid(host)
    result = provision(workdir, target, "broken", tags=["docker"])
    assert not result.succeeded
    sentence = result.error_sentence()
    assert "/etc/docker/daemon.json is not valid JSON (line 2" in sentence
    assert "left untouched" in sentence
    assert "\n" not in sentence
    assert host.file("/etc/docker/daemon.json").content_string == broken
    assert result.hosts[HOST].docker_restarts == 0
    assert engine_pid(host) == pid


def _cli(*args: str) -> tuple[int, str]:
    outcome = CliRunner().invoke(main, list(args))
    return outcome.exit_code, outcome.output


def test_missing_inventory_variable_is_named(workdir: Path, target: Target, host) -> None:
    before = host.file("/etc/cron.d/isletops-probe-prod").content_string
    inventory = write_inventory(workdir / "missing", target, isletnet_instance=None)
    code, output = _cli("provision", "--inventory", str(inventory), "--state-dir", str(workdir / "state"))
    assert code == 2, output
    error = [line for line in output.splitlines() if line.startswith("isletops: error:")]
    assert error == [
        f"isletops: error: Host {HOST} is missing the inventory variable 'isletnet_instance' (the instance name, "
        "e.g. prod); add it to the inventory and run again."
    ]
    assert host.file("/etc/cron.d/isletops-probe-prod").content_string == before


def test_wheels_that_cannot_be_gathered_are_named(workdir: Path, target: Target, host,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # An offline controller that never gathered wheels: an empty state folder, and nothing listens
    # on port 9, so pip can fetch neither the build backend nor the dependencies.
    monkeypatch.setenv("XDG_STATE_HOME", str(workdir / "fresh-controller"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    before = host.file("/etc/cron.d/isletops-probe-prod").content_string
    inventory = write_inventory(workdir / "no-index", target)
    code, output = _cli("provision", "--inventory", str(inventory), "--state-dir", str(workdir / "state"),
                        "--tags", "monitoring")
    assert code == 2, output
    error = [line for line in output.splitlines() if line.startswith("isletops: error:")]
    assert len(error) == 1, output
    assert error[0].startswith(f"isletops: error: Host {HOST}: Cannot build the isletops wheel to install isletops "
                               "on the hosts (")
    assert error[0].endswith("or set isletops_install: false in the inventory.")
    assert host.file("/etc/cron.d/isletops-probe-prod").content_string == before
    assert host.run("/opt/isletops/bin/isletops --help").rc == 0  # the installed one is left as it was


def test_unreachable_host_is_named(workdir: Path, target: Target) -> None:
    inventory = write_inventory(workdir / "unreachable", target, ansible_port=free_port())
    code, output = _cli("provision", "--inventory", str(inventory), "--state-dir", str(workdir / "state"))
    assert code == 2, output
    error = [line for line in output.splitlines() if line.startswith("isletops: error:")]
    assert len(error) == 1
    assert error[0].startswith(f"isletops: error: Host {HOST} is unreachable (")
    assert "unreachable=1" in output


def test_missing_inventory_folder_is_one_sentence(workdir: Path) -> None:
    code, output = _cli("provision", "--inventory", str(workdir / "nowhere"))
    assert code == 2
    assert output.strip() == (f"isletops: error: Inventory {workdir / 'nowhere'} does not exist. Pass --inventory "
                              "with a folder under inventory/ (e.g. inventory/local) or an inventory file.")
