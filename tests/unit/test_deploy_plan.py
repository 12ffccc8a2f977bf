import os
import stat
from pathlib import Path

import pytest

from isletops import deploy
from isletops.config import InstanceConfig
from isletops.errors import DeployError, TagError
from isletops.history import Deployed
from isletops.release import COMPONENTS

T1, T2 = "2026-11-20_01", "2026-11-21_01"


def instance(tmp_path: Path) -> InstanceConfig:
    return InstanceConfig(name="prod", directory=tmp_path / "prod")


def test_strategies_start_first_only_for_stateless_services_without_fixed_names_or_ports():
    spec = {
        "backend": {"image": "x"},
        "frontend": {},
        "edge": {"ports": ["127.0.0.1:8080:8080"]},
        "shepherd": {},
        "storage": {},
    }
    steps = {s.service: s.strategy for s in deploy.service_strategies(spec)}
    assert [s.service for s in deploy.service_strategies(spec)] == list(COMPONENTS)
    assert steps["backend"] == steps["frontend"] == "start-first"
    assert steps["edge"] == "recreate"  # a fixed host port cannot be bound twice
    assert steps["storage"] == steps["queue"] == steps["shepherd"] == steps["pruner"] == "recreate"
    assert deploy.service_strategies({"backend": {"container_name": "b"}})[2].strategy == "recreate"


def test_compose_services_merges_override_files(tmp_path):
    base = tmp_path / "docker-compose.yml"
    base.write_text("services:\n  backend:\n    image: a\n  frontend:\n    image: f\n")
    prod = tmp_path / "docker-compose.production.yml"
    prod.write_text("services:\n  frontend:\n    ports: ['127.0.0.1:80:8080']\n")
    merged = deploy.compose_services([base, prod])
    assert merged["frontend"] == {"image": "f", "ports": ["127.0.0.1:80:8080"]}
    assert merged["backend"] == {"image": "a"}


def test_plan_names_every_image_and_the_rollback_target(tmp_path):
    missing = (f"127.0.0.1:5000/isletnet-shepherd:{T2}",)
    plan = deploy.plan_deploy("deploy", instance(tmp_path), T1, T2, "127.0.0.1:5000", {}, missing)
    assert plan.images["frontend"] == f"127.0.0.1:5000/isletnet-frontend:{T2}"
    text = "\n".join(plan.lines())
    assert f"{T1} -> {T2}" in text
    assert f"127.0.0.1:5000/isletnet-shepherd:{T2}   MISSING" in text
    assert f"roll back to {T1}" in text
    assert text.index("storage:") < text.index("backend:") < text.index("frontend:")


def test_plan_refuses_malformed_tags(tmp_path):
    for bad in ("2026-13-45_1", "latest", "../x"):
        with pytest.raises(TagError, match="not a release tag"):
            deploy.plan_deploy("deploy", instance(tmp_path), T1, bad, "r:5000")


def test_rollback_target_is_the_previous_good_tag_or_a_clear_refusal():
    assert deploy.rollback_target(Deployed(T2, T1, (T1, T2)), None) == T1
    assert deploy.rollback_target(Deployed(T2, T1, (T1, T2)), "2026-11-01_03") == "2026-11-01_03"
    with pytest.raises(DeployError, match="no earlier successful release"):
        deploy.rollback_target(Deployed(T1, "", (T1,)), None)
    with pytest.raises(TagError):
        deploy.rollback_target(Deployed(T1, "", (T1,)), "latest")


def test_disk_needs_count_extracted_layers_plus_the_margin(tmp_path):
    root = tmp_path / "docker"
    needs = deploy.disk_needs(100 * 2**20, 2**30, root, tmp_path / "prod")
    assert needs[root] == int(100 * 2**20 * deploy.EXTRACTION_FACTOR) + 2**30
    assert needs[tmp_path / "prod"] == 2**30
    assert deploy.disk_needs(0, 5, None, tmp_path) == {tmp_path: 5}


def test_disk_check_names_the_short_file_system(tmp_path):
    deploy.check_disk_space({tmp_path: 1})
    too_much = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize + 2**30
    with pytest.raises(DeployError) as excinfo:
        deploy.check_disk_space({tmp_path / "not-yet-created": too_much})
    assert "Not enough free disk space" in str(excinfo.value) and "Nothing was changed" in str(excinfo.value)


def test_disk_check_adds_needs_on_one_file_system(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    half = free // 2 + 2**20  # each alone fits; together they do not
    deploy.check_disk_space({tmp_path / "a": half})
    with pytest.raises(DeployError):
        deploy.check_disk_space({tmp_path / "a": half, tmp_path / "b": half})


def test_hooks_get_kamal_like_environment_and_script_hooks_run(tmp_path):
    inst = instance(tmp_path)
    seen = []
    deploy.register_hook("pre-deploy", seen.append)
    try:
        hooks = inst.directory / "hooks"
        hooks.mkdir(parents=True)
        script = hooks / "pre-deploy"
        out = tmp_path / "env.txt"
        script.write_text(f"#!/bin/sh\nenv | grep ^ISLETOPS_ | sort > {out}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        context = deploy.HookContext("pre-deploy", "rollback", inst, T1, T2, "alice", "2026-11-21T10:00:00+00:00")
        deploy.run_hooks(context)
    finally:
        deploy._HOOKS["pre-deploy"].remove(seen.append)
    assert seen == [context]
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env["ISLETOPS_COMMAND"] == "rollback" and env["ISLETOPS_VERSION"] == T1
    assert env["ISLETOPS_PREVIOUS_VERSION"] == T2 and env["ISLETOPS_PERFORMER"] == "alice"
    assert env["ISLETOPS_RECORDED_AT"] == "2026-11-21T10:00:00+00:00" and env["ISLETOPS_INSTANCE"] == "prod"


def test_a_failing_script_hook_stops_with_its_last_line(tmp_path):
    inst = instance(tmp_path)
    (inst.directory / "hooks").mkdir(parents=True)
    script = inst.directory / "hooks" / "pre-deploy"
    script.write_text("#!/bin/sh\necho 'monitoring says no' >&2\nexit 3\n")
    script.chmod(0o755)
    context = deploy.HookContext("pre-deploy", "deploy", inst, T1, "", "bob", "now")
    with pytest.raises(DeployError, match="pre-deploy hook .* failed: monitoring says no"):
        deploy.run_hooks(context)


def test_dependency_levels_from_the_real_compose_templates(tmp_path):
    import yaml

    from isletops import stack

    rendered = stack.render_compose_files(instance(tmp_path), gpu=False)
    spec = {}
    for text in rendered.values():
        for name, service in (yaml.safe_load(text).get("services") or {}).items():
            spec.setdefault(name, {}).update(service or {})
    assert deploy.dependency_levels(spec) == [
        ["storage", "queue"], ["backend", "shepherd", "pruner"], ["frontend"], ["edge"]
    ]


def test_dependency_levels_without_depends_on_keep_component_order_and_refuse_cycles():
    assert deploy.dependency_levels({}) == [[c] for c in COMPONENTS]
    cycle = {"storage": {"depends_on": ["frontend"]}, "frontend": {"depends_on": {"storage": {}}}}
    with pytest.raises(DeployError, match="dependency cycle"):
        deploy.dependency_levels(cycle)


@pytest.mark.parametrize(("publish", "backend"), [(False, "start-first"), (True, "recreate")])
def test_real_templates_roll_the_backend_side_by_side_unless_its_port_is_published(tmp_path, publish, backend):
    import dataclasses

    import yaml

    from isletops import stack

    rendered = stack.render_compose_files(dataclasses.replace(instance(tmp_path), publish_api_port=publish), gpu=False)
    spec = {}
    for text in rendered.values():
        for name, service in (yaml.safe_load(text).get("services") or {}).items():
            spec.setdefault(name, {}).update(service or {})
    steps = {s.service: s.strategy for s in deploy.service_strategies(spec)}
    assert steps["backend"] == backend
    assert steps["frontend"] == "start-first"  # the edge in front of it holds the public port
    assert steps["edge"] == "recreate"  # kept running when its image is unchanged (see unchanged_services)


def test_old_backend_outlives_the_frontends_dns_cache():
    import re

    conf = (Path(deploy.__file__).parents[2] / "services" / "frontend" / "nginx.conf").read_text()
    valid = re.search(r"resolver 127\.0\.0\.11 valid=(\d+)s", conf)
    assert valid, "the frontend must resolve the backend through Docker's DNS with a short valid="
    assert int(valid.group(1)) < deploy.RESOLVER_TTL_S
    assert "proxy_next_upstream error timeout http_502 http_503;" in conf


def test_old_frontend_outlives_the_edges_dns_cache():
    import re

    conf = (Path(deploy.__file__).parents[2] / "services" / "edge" / "nginx.conf").read_text()
    valid = re.search(r"resolver 127\.0\.0\.11 valid=(\d+)s", conf)
    assert valid, "the edge must resolve the frontend through Docker's DNS with a short valid="
    assert int(valid.group(1)) < deploy.RESOLVER_TTL_S
    assert "set $frontend http://frontend:8080;" in conf and "proxy_pass $frontend;" in conf  # resolved per request
    assert "proxy_next_upstream error timeout http_502 http_503;" in conf


class _Engine:
    def __init__(self, root=None, error=None):
        self.root, self.error, self.removed = root, error, []

    def data_root(self):
        if self.error:
            raise self.error
        return self.root

    def remove_container(self, name, stop_timeout_s=10):
        self.removed.append((name, stop_timeout_s))


def test_data_root_and_container_removal_go_through_the_engine(tmp_path):
    from isletops.errors import DockerError

    assert deploy.docker_data_root(_Engine(root=tmp_path)) == tmp_path
    assert deploy.docker_data_root(_Engine(root=tmp_path / "absent")) is None
    assert deploy.docker_data_root(_Engine(error=DockerError("Cannot ask Docker for its data root: down."))) is None
    engine = _Engine()
    deploy._remove_container(engine, "prod-backend-1", drain_s=7)
    assert engine.removed == [("prod-backend-1", 7)]


class _SideBySideEngine:
    """Containers of one project in memory; `compose up --scale` adds one. The proof on real
    Docker is test_ctrl_c_mid_switch_restores_the_previous_release; this pins the clean-up rule."""

    def __init__(self, backends: int, interrupt_on_scale: bool = False) -> None:
        from isletops.docker_engine import ContainerState

        self.state = ContainerState
        self.containers = [self._backend(n) for n in range(1, backends + 1)]
        self.interrupt_on_scale = interrupt_on_scale
        self.calls: list[list[str]] = []
        self.removed: list[str] = []

    def _backend(self, number: int):
        return self.state("backend", f"p-backend-{number}", "running", "healthy", 0, None, "b:new", None, "")

    def project_containers(self, project, expected=()):
        return list(self.containers)

    def compose(self, project, files, args, env=None, capture=False):
        self.calls.append(args)
        scale = int(args[args.index("--scale") + 1].split("=")[1])
        while len(self.containers) < scale:
            self.containers.append(self._backend(len(self.containers) + 1))
        if self.interrupt_on_scale:
            raise KeyboardInterrupt

    def remove_container(self, name, stop_timeout_s=10):
        self.removed.append(name)
        self.containers = [s for s in self.containers if s.name != name]


def test_an_interrupt_after_the_scale_up_removes_the_new_container_and_keeps_the_old():
    engine = _SideBySideEngine(backends=1, interrupt_on_scale=True)
    with pytest.raises(KeyboardInterrupt):
        deploy._roll_level(engine, "p", [], [deploy.ServiceStep("backend", "start-first")], 5, lambda _l: None, 7,
                           None)
    assert engine.removed == ["p-backend-2"]
    assert [s.name for s in engine.containers] == ["p-backend-1"]


def test_leftover_containers_converge_to_one(monkeypatch):
    monkeypatch.setattr(deploy, "RESOLVER_TTL_S", 0)
    engine = _SideBySideEngine(backends=2)  # e.g. left by a crash mid-switch
    deploy._roll_level(engine, "p", [], [deploy.ServiceStep("backend", "start-first")], 5, lambda _l: None, 7, None)
    assert "backend=3" in engine.calls[0]  # one new container, not one per old one
    assert [s.name for s in engine.containers] == ["p-backend-3"]
