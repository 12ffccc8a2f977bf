"""Compose rendering and instance preparation (`isletops.stack`): pure logic, no Docker."""

from __future__ import annotations

import os
import stat

import pytest
import yaml

from isletops import release, stack
from isletops.config import ensure_env_file, parse_config, read_env_file
from isletops.errors import ConfigError


def _site(tmp_path, **settings):
    return parse_config({"instances_root": str(tmp_path), "instances": {"prod": {"http_port": 8180, "api_port": 8181,
                                                                                   **settings}}})


def _render(tmp_path, gpu=False, labels=None, **settings):
    instance = _site(tmp_path, **settings).instance("prod")
    texts = stack.render_compose_files(instance, gpu=gpu, extra_labels=labels)
    return {name: yaml.safe_load(text) for name, text in texts.items()}, texts


def test_every_component_is_a_service_with_image_healthcheck_and_labels(tmp_path):
    documents, _ = _render(tmp_path, labels={"org.isletnet.test": "1"})
    services = documents["docker-compose.yml"]["services"]
    assert list(services) == list(release.COMPONENTS)
    for component, service in services.items():
        assert service["image"] == f"${{REPOSITORY-}}isletnet-{component}:${{TAG:?missing-env}}"
        assert service["healthcheck"]["test"][0] == "CMD"
        assert service["labels"]["org.isletnet.instance"] == "prod"
        assert service["labels"]["org.isletnet.component"] == component
        assert service["labels"]["org.isletnet.test"] == "1"
    assert documents["docker-compose.yml"]["networks"]["default"]["labels"]["org.isletnet.test"] == "1"


def test_dependencies_wait_for_health_in_start_order(tmp_path):
    services = _render(tmp_path)[0]["docker-compose.yml"]["services"]
    for component in ("backend", "shepherd", "pruner"):
        assert services[component]["depends_on"] == {
            "storage": {"condition": "service_healthy"}, "queue": {"condition": "service_healthy"}}
    assert services["frontend"]["depends_on"] == {"backend": {"condition": "service_healthy"}}
    assert services["edge"]["depends_on"] == {"frontend": {"condition": "service_healthy"}}
    order = list(release.COMPONENTS)
    for component, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert order.index(dependency) < order.index(component)


def test_secrets_and_required_settings_fail_by_name_when_missing(tmp_path):
    _, texts = _render(tmp_path, publish_api_port=True)
    base, production = texts["docker-compose.yml"], texts["docker-compose.production.yml"]
    for variable in ("TAG", "S3_ACCESS_KEY", "S3_SECRET_KEY", "DB_PASSWORD"):
        assert f"${{{variable}:?missing-env}}" in base
    for variable in ("LOCAL_DATA_DIR", "BIND_ADDRESS", "HTTP_PORT", "API_PORT"):
        assert f"${{{variable}:?missing-env}}" in production


def test_production_file_publishes_only_the_edge_by_default_and_keeps_data_on_disk(tmp_path):
    production = _render(tmp_path)[0]["docker-compose.production.yml"]["services"]
    published = {name: service["ports"] for name, service in production.items() if "ports" in service}
    assert published == {"edge": ["${BIND_ADDRESS:?missing-env}:${HTTP_PORT:?missing-env}:8080"]}
    assert production["storage"]["volumes"] == ["${LOCAL_DATA_DIR:?missing-env}/storage:/data"]
    assert production["queue"]["volumes"] == ["${LOCAL_DATA_DIR:?missing-env}/queue:/data"]
    for service in production.values():
        assert service["restart"] == "unless-stopped"
        assert service["logging"]["options"] == {"max-size": "10m", "max-file": "3"}


@pytest.mark.parametrize("gpu", [True, False])
def test_gpu_goes_to_the_shepherd_only_when_enabled(tmp_path, gpu):
    production = _render(tmp_path, gpu=gpu)[0]["docker-compose.production.yml"]["services"]
    devices = production["shepherd"].get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    assert devices == ([{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}] if gpu else None)
    assert all("deploy" not in service for name, service in production.items() if name != "shepherd")


@pytest.mark.parametrize(("setting", "detected", "expected"), [
    ("yes", False, True), ("no", True, False), ("auto", True, True), ("auto", False, False)])
def test_gpu_setting(tmp_path, setting, detected, expected):
    instance = _site(tmp_path, gpu=setting).instance("prod")
    assert stack.gpu_enabled(instance, detect=lambda: detected) is expected


def test_extra_labels_parse_and_reject_malformed_entries():
    assert stack.extra_labels_from_env("org.isletnet.test=1, team=lab") == {"org.isletnet.test": "1", "team": "lab"}
    assert stack.extra_labels_from_env("") == {}
    for bad in ("novalue", "Upper=1", 'a="quoted"'):
        with pytest.raises(ConfigError, match="ISLETOPS_EXTRA_LABELS has a malformed label"):
            stack.extra_labels_from_env(bad)


@pytest.mark.parametrize("tag", ["", "bad tag", "-leading", "a" * 129, "x:y"])
def test_bad_image_tags_are_refused(tag):
    with pytest.raises(ConfigError, match="cannot be an image tag"):
        stack.validate_image_tag(tag)


def test_prepare_instance_writes_env_compose_files_and_owned_data_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "detect_gpu", lambda: False)
    site = _site(tmp_path)
    files = stack.prepare_instance(site, "prod", "2026-11-23_01", registry="registry.example.org:5000")
    instance = site.instance("prod")
    assert files == [instance.directory / "docker-compose.yml", instance.directory / "docker-compose.production.yml"]
    assert all(path.exists() for path in files)
    env = read_env_file(instance.env_file)
    assert env["TAG"] == "2026-11-23_01"
    assert env["REPOSITORY"] == "registry.example.org:5000/"
    assert env["HTTP_PORT"] == "8180" and env["API_PORT"] == "8181" and env["BIND_ADDRESS"] == "127.0.0.1"
    assert env["LOCAL_DATA_DIR"] == str(instance.local_data_dir.resolve())
    assert len(env["DB_PASSWORD"]) >= 32 and env["S3_ACCESS_KEY"] != env["S3_SECRET_KEY"]
    assert stat.S_IMODE(instance.env_file.stat().st_mode) == 0o600
    assert stack.current_tag(instance) == "2026-11-23_01"
    if os.geteuid() == 0:
        assert (instance.local_data_dir / "storage").stat().st_uid == 10001
        assert (instance.local_data_dir / "queue").stat().st_uid == 10002


def test_prepare_again_keeps_secrets_and_hand_edits_but_follows_the_tag(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "detect_gpu", lambda: False)
    site = _site(tmp_path)
    stack.prepare_instance(site, "prod", "2026-11-23_01")
    instance = site.instance("prod")
    first = read_env_file(instance.env_file)
    with instance.env_file.open("a") as handle:
        handle.write("SMTP_PASSWORD=kept-by-hand\n")
    stack.prepare_instance(site, "prod", "2026-11-23_02")
    second = read_env_file(instance.env_file)
    assert second["TAG"] == "2026-11-23_02"
    assert second["SMTP_PASSWORD"] == "kept-by-hand"
    for secret in ("DB_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        assert second[secret] == first[secret]


def test_prepare_refuses_a_bad_tag_and_leaves_the_instance_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "detect_gpu", lambda: False)
    site = _site(tmp_path)
    stack.prepare_instance(site, "prod", "2026-11-23_01")
    instance = site.instance("prod")
    before = {path.name: path.read_text() for path in [instance.env_file, *stack.compose_files(instance)]}
    with pytest.raises(ConfigError, match="'no good' cannot be an image tag"):
        stack.prepare_instance(site, "prod", "no good")
    after = {path.name: path.read_text() for path in [instance.env_file, *stack.compose_files(instance)]}
    assert after == before


def test_an_instance_never_prepared_has_no_tag(tmp_path):
    instance = _site(tmp_path).instance("prod")
    assert stack.current_tag(instance) is None
    ensure_env_file(instance, {"TAG": "2026-11-23_01"})  # an env file alone is not a rendered instance
    assert stack.current_tag(instance) is None


def test_unknown_components_and_services_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown service\(s\): web\."):
        stack.validate_services(["web"])
    with pytest.raises(ConfigError, match=r"Unknown component\(s\): db\."):
        stack.build_images(["db"], engine=object())


def test_backend_port_is_published_on_the_bind_address_when_asked(tmp_path):
    production = _render(tmp_path, publish_api_port=True)[0]["docker-compose.production.yml"]["services"]
    published = {name: service["ports"] for name, service in production.items() if "ports" in service}
    assert published == {
        "backend": ["${BIND_ADDRESS:?missing-env}:${API_PORT:?missing-env}:8000"],
        "edge": ["${BIND_ADDRESS:?missing-env}:${HTTP_PORT:?missing-env}:8080"],
    }


def test_api_url_goes_through_the_public_port_unless_the_backend_is_published(tmp_path):
    assert _site(tmp_path).instance("prod").api_url == "http://127.0.0.1:8180"
    assert _site(tmp_path, publish_api_port=True).instance("prod").api_url == "http://127.0.0.1:8181"
    with pytest.raises(ConfigError, match="publish_api_port"):
        _site(tmp_path, publish_api_port="yes")


def test_the_instances_proxy_timeout_reaches_the_edge_and_the_frontend(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "detect_gpu", lambda: False)
    site = _site(tmp_path, proxy_timeout_s=900)
    stack.prepare_instance(site, "prod", "2026-11-23_01")
    assert read_env_file(site.instance("prod").env_file)["PROXY_TIMEOUT_S"] == "900"
    documents, _ = _render(tmp_path)
    services = documents["docker-compose.yml"]["services"]
    for name in ("edge", "frontend"):
        assert services[name]["environment"]["PROXY_TIMEOUT_S"] == "${PROXY_TIMEOUT_S:-600}", name


def test_every_service_has_a_memory_limit_and_the_defaults_cover_every_component(tmp_path):
    from isletops.config import DEFAULT_LIMITS

    assert set(DEFAULT_LIMITS) == set(release.COMPONENTS)
    services = _render(tmp_path)[0]["docker-compose.yml"]["services"]
    for component, service in services.items():
        assert service["mem_limit"] == DEFAULT_LIMITS[component].memory, component
    assert services["shepherd"]["mem_limit"] == "3g" and "cpus" not in services["shepherd"]  # all cores
    assert services["pruner"]["cpus"] == min(0.5, os.cpu_count())


def test_limits_from_the_site_config_override_one_service_and_cpus_are_capped_at_the_host(tmp_path):
    documents, _ = _render(tmp_path, limits={"shepherd": {"memory": "4g", "cpus": 10_000}, "edge": {"cpus": None}})
    services = documents["docker-compose.yml"]["services"]
    assert services["shepherd"]["mem_limit"] == "4g"
    assert services["shepherd"]["cpus"] == os.cpu_count()  # Docker refuses more CPUs than the host has
    assert services["edge"]["mem_limit"] == "128m" and "cpus" not in services["edge"]
    assert services["backend"]["mem_limit"] == "2g"
    instance = _site(tmp_path, limits={"backend": {"cpus": 3}}).instance("prod")
    assert stack.compose_limits(instance, host_cpus=2)["backend"] == {"mem_limit": "2g", "cpus": "2"}
    assert stack.compose_limits(instance, host_cpus=16)["backend"] == {"mem_limit": "2g", "cpus": "3"}


@pytest.mark.parametrize(("limits", "message"), [
    ("4g", r"limits must map services to their limits"),
    ({"web": {"memory": "1g"}}, r"limits names an unknown service 'web'\..*Services: storage, queue"),
    ({"backend": "1g"}, r"limits\.backend must set memory and/or cpus"),
    ({"backend": {}}, r"limits\.backend must set memory and/or cpus"),
    ({"backend": {"memory": "1g", "swap": "2g"}}, r"limits\.backend must set memory and/or cpus"),
    ({"backend": {"memory": "lots"}}, r"limits\.backend\.memory must be a size such as 512m or 4g, got 'lots'"),
    ({"backend": {"memory": "-1g"}}, r"limits\.backend\.memory must be a size"),
    ({"backend": {"memory": "4m"}}, r"limits\.backend\.memory must be at least 6m \(Docker's minimum\), got 4m"),
    ({"backend": {"cpus": 0}}, r"limits\.backend\.cpus must be at least 0\.01"),
    ({"backend": {"cpus": float("nan")}}, r"limits\.backend\.cpus must be at least 0\.01"),
    ({"backend": {"cpus": "two"}}, r"limits\.backend\.cpus must be a number, got 'two'"),
])
def test_bad_limits_are_refused_with_the_key_named(tmp_path, limits, message):
    with pytest.raises(ConfigError, match=r"instances\.prod\." + message):
        _site(tmp_path, limits=limits)
