import os
import stat
from pathlib import Path

import pytest

from isletops import deploy
from isletops.config import InstanceConfig
from isletops.deploy import rollout
from isletops.deploy.disk import EXTRACTION_FACTOR
from isletops.engines import compose
from isletops.engines.base import ServicePlan, ServiceStep, Strategy
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
    steps = {s.service: s.strategy for s in compose.service_strategies(spec)}
    assert [s.service for s in compose.service_strategies(spec)] == list(COMPONENTS)
    assert steps["backend"] == steps["frontend"] == "start-first"
    assert steps["edge"] == "recreate"  # a fixed host port cannot be bound twice
    assert steps["storage"] == steps["queue"] == steps["shepherd"] == steps["pruner"] == "recreate"
    assert compose.service_strategies({"backend": {"container_name": "b"}})[2].strategy == "recreate"


def test_compose_services_merges_override_files():
    base = "services:\n  backend:\n    image: a\n  frontend:\n    image: f\n"
    prod = "services:\n  frontend:\n    ports: ['127.0.0.1:80:8080']\n"
    merged = compose.merged_services([base, prod])
    assert merged["frontend"] == {"image": "f", "ports": ["127.0.0.1:80:8080"]}
    assert merged["backend"] == {"image": "a"}


def _plan(from_tag=T1, to_tag=T2, missing=()):
    services = compose.plan_from_spec({})
    return deploy.make_plan("deploy", "prod", "compose", from_tag, to_tag, "127.0.0.1:5000", services, services, 60,
                            missing)


def test_plan_names_every_image_and_the_rollback_target():
    missing = (f"127.0.0.1:5000/isletnet-shepherd:{T2}",)
    plan = _plan(missing=missing)
    assert plan.images["frontend"] == f"127.0.0.1:5000/isletnet-frontend:{T2}"
    assert plan.restore_images["frontend"] == f"127.0.0.1:5000/isletnet-frontend:{T1}"
    text = "\n".join(plan.lines())
    assert f"{T1} -> {T2}" in text
    assert f"127.0.0.1:5000/isletnet-shepherd:{T2}   MISSING" in text
    assert f"roll back to {T1}" in text
    assert text.index("storage:") < text.index("backend:") < text.index("frontend:")


def test_a_plan_from_nothing_or_to_the_same_tag_has_no_restore():
    assert _plan(from_tag="").restore is None
    assert _plan(from_tag=T2).restore is None
    assert "nothing to roll back to" in "\n".join(_plan(from_tag="").lines())


def test_plan_refuses_malformed_tags():
    for bad in ("2026-13-45_1", "latest", "../x"):
        with pytest.raises(TagError, match="not a release tag"):
            _plan(to_tag=bad)


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
    assert needs[root] == int(100 * 2**20 * EXTRACTION_FACTOR) + 2**30
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
    hooks = deploy.Hooks()
    hooks.add("pre-deploy", seen.append)
    hooks_dir = inst.directory / "hooks"
    hooks_dir.mkdir(parents=True)
    script = hooks_dir / "pre-deploy"
    out = tmp_path / "env.txt"
    script.write_text(f"#!/bin/sh\nenv | grep ^ISLETOPS_ | sort > {out}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    context = deploy.HookContext("pre-deploy", "rollback", inst, T1, T2, "alice", "2026-11-21T10:00:00+00:00")
    hooks.run(context)
    assert seen == [context]
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env["ISLETOPS_COMMAND"] == "rollback" and env["ISLETOPS_VERSION"] == T1
    assert env["ISLETOPS_PREVIOUS_VERSION"] == T2 and env["ISLETOPS_PERFORMER"] == "alice"
    assert env["ISLETOPS_RECORDED_AT"] == "2026-11-21T10:00:00+00:00" and env["ISLETOPS_INSTANCE"] == "prod"


def test_unknown_hook_stages_are_refused():
    with pytest.raises(ValueError, match="unknown hook stage"):
        deploy.Hooks().add("mid-deploy", print)


def test_a_failing_script_hook_stops_with_its_last_line(tmp_path):
    inst = instance(tmp_path)
    (inst.directory / "hooks").mkdir(parents=True)
    script = inst.directory / "hooks" / "pre-deploy"
    script.write_text("#!/bin/sh\necho 'monitoring says no' >&2\nexit 3\n")
    script.chmod(0o755)
    context = deploy.HookContext("pre-deploy", "deploy", inst, T1, "", "bob", "now")
    with pytest.raises(DeployError, match="pre-deploy hook .* failed: monitoring says no"):
        deploy.Hooks().run(context)


def test_dependency_levels_from_the_real_compose_templates(tmp_path):
    import yaml

    from isletops import stack

    rendered = stack.render_compose_files(instance(tmp_path), gpu=False)
    spec = {}
    for text in rendered.values():
        for name, service in (yaml.safe_load(text).get("services") or {}).items():
            spec.setdefault(name, {}).update(service or {})
    assert compose.dependency_levels(spec) == [
        ["storage", "queue"], ["backend", "shepherd", "pruner"], ["frontend"], ["edge"]
    ]


def test_dependency_levels_without_depends_on_keep_component_order_and_refuse_cycles():
    assert compose.dependency_levels({}) == [[c] for c in COMPONENTS]
    cycle = {"storage": {"depends_on": ["frontend"]}, "frontend": {"depends_on": {"storage": {}}}}
    with pytest.raises(DeployError, match="dependency cycle"):
        compose.dependency_levels(cycle)


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
    steps = {s.service: s.strategy for s in compose.service_strategies(spec)}
    assert steps["backend"] == backend
    assert steps["frontend"] == "start-first"  # the edge in front of it holds the public port
    assert steps["edge"] == "recreate"  # kept running when its image is unchanged (see unchanged_services)


def test_old_backend_outlives_the_frontends_dns_cache():
    import re

    conf = (Path(deploy.__file__).parents[3] / "services" / "frontend" / "nginx.conf").read_text()
    valid = re.search(r"resolver 127\.0\.0\.11 valid=(\d+)s", conf)
    assert valid, "the frontend must resolve the backend through Docker's DNS with a short valid="
    assert int(valid.group(1)) < rollout.RESOLVER_TTL_S
    assert "proxy_next_upstream error timeout http_502 http_503;" in conf


def test_old_frontend_outlives_the_edges_dns_cache():
    import re

    conf = (Path(deploy.__file__).parents[3] / "services" / "edge" / "nginx.conf").read_text()
    valid = re.search(r"resolver 127\.0\.0\.11 valid=(\d+)s", conf)
    assert valid, "the edge must resolve the frontend through Docker's DNS with a short valid="
    assert int(valid.group(1)) < rollout.RESOLVER_TTL_S
    assert "set $frontend http://frontend:8080;" in conf and "proxy_pass $frontend;" in conf  # resolved per request
    assert "proxy_next_upstream error timeout http_502 http_503;" in conf


def test_a_service_plan_knows_each_step():
    plan = ServicePlan((ServiceStep("backend", Strategy.START_FIRST),), (("backend",),))
    assert plan.step("backend").describe(7).startswith("backend: start the new version beside the old")
    assert ServiceStep("queue", Strategy.RECREATE).describe(7) == "queue: recreate (stop with 7 s drain), wait healthy"
