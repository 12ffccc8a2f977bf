"""`engine: kubernetes` driven by the real deploy core (isletops.deploy) against the fake API server
of tests/fakes/kube_api.py: no real cluster runs here. A deploy applies the release and waits on
its rollouts. A failed one (a stuck rollout, a failed e2e gate) re-applies the previous release,
so every rollout it changed is undone, and it fails with the pod's events and logs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from kubernetes import client as k8s

from isletops import deploy
from isletops.config import InstanceConfig, SiteConfig
from isletops.engines.kubernetes import KubernetesEngine
from isletops.errors import DeployError, LockError
from isletops.kube.chart import namespace_for
from isletops.kube.cluster import KubeCluster
from isletops.lock import InstanceLock
from tests.fakes.kube_api import FakeCluster, FakeKubeAPI
from tests.unit.conftest import FAKE_REGISTRY as REGISTRY
from tests.unit.conftest import RELEASES

T1, T2, _ = RELEASES


def engine_for(instance: InstanceConfig, kube_api: FakeKubeAPI) -> KubernetesEngine:
    configuration = k8s.Configuration(host=kube_api.url)
    cluster = KubeCluster(namespace_for(instance), k8s.ApiClient(configuration), sleep=lambda _: None)
    return KubernetesEngine(SiteConfig(source=None), instance, cluster)


def options(tag: str, **given) -> deploy.DeployOptions:
    return deploy.DeployOptions(tag=tag, registry=REGISTRY, min_free_bytes=0, resolver_ttl_s=0,
                                health_timeout_s=5, **given)


def images(fake_kube: FakeCluster) -> dict[str, str]:
    return {obj["metadata"]["name"]: obj["spec"]["template"]["spec"]["containers"][0]["image"]
            for obj in fake_kube.objects.values() if obj["kind"] in ("Deployment", "StatefulSet")}


def test_a_deploy_applies_the_release_and_waits_on_its_rollouts(instance, registry, kube_api, fake_kube) -> None:
    result = deploy.deploy(instance, engine_for(instance, kube_api), options(T1), registry=registry)
    assert result.result == "ok"
    assert images(fake_kube) == {name: f"{REGISTRY}/isletnet-{name}:{T1}"
                             for name in ("storage", "queue", "backend", "shepherd", "frontend")}
    assert any(r.path.startswith("/apis/batch/v1/namespaces/isletnet-prod/cronjobs/pruner") for r in kube_api.requests)


def test_a_failed_gate_undoes_every_rollout(instance, registry, kube_api, fake_kube) -> None:
    deploy.deploy(instance, engine_for(instance, kube_api), options(T1), registry=registry)
    before = images(fake_kube)

    def gate(base_url: str, timeout_s: float) -> str:
        raise DeployError("The synthetic job did not finish.")

    with pytest.raises(deploy.DeployFailed, match=f"rolled back to {T1}"):
        deploy.deploy(instance, engine_for(instance, kube_api), options(T2, gate=gate), registry=registry)
    assert images(fake_kube) == before


def test_a_stuck_rollout_fails_with_the_pods_events_and_logs(instance, registry, kube_api, fake_kube) -> None:
    deploy.deploy(instance, engine_for(instance, kube_api), options(T1), registry=registry)
    fake_kube.rollouts_finish = False
    fake_kube.pods = [{"metadata": {"name": "storage-0", "namespace": "isletnet-prod",
                                "labels": {"app.kubernetes.io/component": "storage",
                                           "org.isletnet.component": "storage"}},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}]
    fake_kube.events = {"storage-0": [{"metadata": {"name": "e"}, "involvedObject": {"name": "storage-0"},
                                   "type": "Warning", "reason": "Unhealthy", "message": "Readiness probe failed"}]}
    with pytest.raises(deploy.DeployFailed) as caught:
        deploy.deploy(instance, engine_for(instance, kube_api), options(T2), registry=registry)
    assert "statefulset/storage did not finish" in str(caught.value)
    assert "Readiness probe failed" in caught.value.details


def test_engine_for_picks_kubernetes_with_the_kubeconfig(tmp_path, kube_api, monkeypatch) -> None:
    from isletops.engines import engine_for

    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    instance = InstanceConfig(name="lab", directory=tmp_path / "lab", engine="kubernetes")
    engine = engine_for(SiteConfig(source=None), instance)
    assert isinstance(engine, KubernetesEngine) and engine.cluster.namespace == "isletnet-lab"
    assert engine.service_states(["frontend"])[0].state == "missing"


def test_the_deploy_holds_the_namespace_lease_and_gives_it_back(instance, registry, kube_api, fake_kube) -> None:
    deploy.deploy(instance, engine_for(instance, kube_api), options(T1), registry=registry)
    lease_calls = [(r.method, r.path.split("?")[0]) for r in kube_api.requests if "/leases" in r.path]
    assert ("POST", "/apis/coordination.k8s.io/v1/namespaces/isletnet-prod/leases") in lease_calls
    assert lease_calls[-1][0] == "DELETE"
    assert not [path for path in fake_kube.objects if "/leases/" in path]


def test_a_hold_by_hand_is_a_lease_that_does_not_expire_with_a_deploys(instance, kube_api) -> None:
    engine = engine_for(instance, kube_api)
    assert engine.cluster_lock_holder() == ""
    engine.take_cluster_lock("alice@admin-1 (by hand, manual): upgrade", by_hand=True)
    assert engine.cluster_lock_holder() == "alice@admin-1 (by hand, manual): upgrade"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    assert engine.cluster.lease_holder(now=later) == "alice@admin-1 (by hand, manual): upgrade"
    assert not engine.release_cluster_lock("bob@admin-2 (pid 7, deploy x)")
    assert engine.release_cluster_lock("alice@admin-1 (by hand, manual): upgrade")
    assert engine.cluster_lock_holder() == ""
    engine.take_cluster_lock("bob@admin-2 (pid 7, deploy x)")  # a deploy's lease ends after an hour
    assert engine.cluster.lease_holder(now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)) == ""


def test_a_lease_held_elsewhere_stops_the_deploy_before_anything_changes(instance, registry, kube_api,
                                                                         fake_kube) -> None:
    other = engine_for(instance, kube_api)
    other.take_cluster_lock("admin@other-host (pid 7, deploy x)")
    with pytest.raises(LockError, match="admin@other-host"):
        deploy.deploy(instance, engine_for(instance, kube_api), options(T1), registry=registry)
    assert images(fake_kube) == {}
    assert not InstanceLock(instance.state_dir).status().held  # the file lock was given back too


def test_the_gate_goes_through_the_ingress() -> None:
    instance = InstanceConfig(name="lab", directory=Path("/x"), engine="kubernetes", public_url="https://islets.example.org/")
    assert instance.frontend_url == "https://islets.example.org"
    assert InstanceConfig(name="lab", directory=Path("/x"), public_url="https://a.b").frontend_url == "http://127.0.0.1:8080"
