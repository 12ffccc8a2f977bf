"""isletops.kube.cluster through the official kubernetes client against the fake API server of
tests/fakes/kube_api.py (no real cluster runs here): server-side apply of the rendered objects,
rollout waits, the undo of every rollout a deploy changed, the failing pod's events and logs, and
the deploy lock as a Lease."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from isletops.errors import DeployError, LockError
from isletops.kube.chart import render_kubernetes
from isletops.kube.cluster import LEASE_NAME, ClusterError, KubeCluster, Rollout, object_path, roll_out
from tests.fakes.kube_api import RESOURCES, FakeCluster, FakeKubeAPI
from tests.unit.test_kube_chart import TAG, make_instance, variant
from tests.unit.test_kube_validate import VARIANTS

NS = "isletnet-demo"


def cluster_for(kube_api: FakeKubeAPI) -> KubeCluster:
    configuration = k8s.Configuration(host=kube_api.url)
    configuration.api_key = {"authorization": "fake"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return KubeCluster(NS, k8s.ApiClient(configuration), sleep=lambda _: None)


def rendered_objects(tmp_path: Path, tag: str = TAG) -> list[dict[str, Any]]:
    return render_kubernetes(make_instance(tmp_path), tag, tmp_path / f"out-{tag}").objects


def test_apply_sends_every_object_as_server_side_apply(tmp_path: Path, kube_api: FakeKubeAPI,
                                                       fake_kube: FakeCluster) -> None:
    objects = rendered_objects(tmp_path)
    rollouts = cluster_for(kube_api).apply(objects)
    patches = [r for r in kube_api.requests if r.method == "PATCH"]
    assert len(patches) == len(objects)
    assert all("fieldManager=isletops" in r.path and "force=true" in r.path for r in patches)
    assert f"/apis/apps/v1/namespaces/{NS}/deployments/backend" in fake_kube.objects
    assert {(r.kind, r.name) for r in rollouts} == {("Deployment", "backend"), ("Deployment", "frontend"),
                                                     ("Deployment", "shepherd"), ("StatefulSet", "queue"),
                                                     ("StatefulSet", "storage")}
    assert all(r.previous_template is None for r in rollouts)


def test_a_second_apply_of_the_same_release_rolls_nothing(tmp_path: Path, kube_api: FakeKubeAPI) -> None:
    cluster = cluster_for(kube_api)
    objects = rendered_objects(tmp_path)
    cluster.apply(objects)
    assert cluster.apply(objects) == []


def test_a_new_tag_rolls_the_workloads_and_undo_puts_the_old_templates_back(
        tmp_path: Path, kube_api: FakeKubeAPI, fake_kube: FakeCluster) -> None:
    cluster = cluster_for(kube_api)
    cluster.apply(rendered_objects(tmp_path))
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/backend"
    old_image = fake_kube.objects[path]["spec"]["template"]["spec"]["containers"][0]["image"]
    rollouts = cluster.apply(rendered_objects(tmp_path, "2026-11-24_01"))
    assert {r.name for r in rollouts} == {"backend", "frontend", "shepherd", "queue", "storage"}
    assert fake_kube.objects[path]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("2026-11-24_01")
    cluster.wait_rollouts(rollouts, timeout_s=5)
    assert cluster.undo(rollouts) == []
    assert fake_kube.objects[path]["spec"]["template"]["spec"]["containers"][0]["image"] == old_image
    merges = [r for r in kube_api.requests if r.method == "PATCH" and "fieldManager" not in r.path]
    assert len(merges) == len(rollouts)


def test_a_stuck_rollout_names_the_workload_with_its_pods_events_and_logs(tmp_path: Path, kube_api: FakeKubeAPI,
                                                                         fake_kube: FakeCluster) -> None:
    fake_kube.rollouts_finish = False
    fake_kube.pods = [{"metadata": {"name": "backend-7f-x1", "namespace": NS},
                   "status": {"conditions": [{"type": "Ready", "status": "False"}]}}]
    fake_kube.events = {"backend-7f-x1": [{"metadata": {"name": "e1"}, "involvedObject": {"name": "backend-7f-x1"},
                                       "type": "Warning", "reason": "BackOff",
                                       "message": "Back-off restarting failed container"}]}
    fake_kube.logs = {"backend-7f-x1": "starting\nS3_ACCESS_KEY is required\n"}
    cluster = cluster_for(kube_api)
    rollouts = cluster.apply([o for o in rendered_objects(tmp_path) if o["metadata"]["name"] == "backend"])
    clock = iter(range(100))
    cluster.clock = lambda: float(next(clock))
    with pytest.raises(ClusterError) as caught:
        cluster.wait_rollouts(rollouts, timeout_s=3)
    text = str(caught.value)
    assert "deployment/backend did not finish in 3 s" in text
    assert "BackOff: Back-off restarting failed container" in text and "log: S3_ACCESS_KEY is required" in text


def test_undo_of_a_workload_the_deploy_created_scales_it_to_zero(kube_api: FakeKubeAPI, fake_kube: FakeCluster) -> None:
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/shepherd"
    fake_kube.objects[path] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shepherd",
                           "resourceVersion": "1", "generation": 1}, "spec": {"replicas": 2, "template": {}}}
    assert cluster_for(kube_api).undo([Rollout("Deployment", "shepherd", None)]) == []
    assert fake_kube.objects[path]["spec"]["replicas"] == 0


def test_an_undo_that_fails_is_a_note_not_an_exception(kube_api: FakeKubeAPI) -> None:
    notes = cluster_for(kube_api).undo([Rollout("Deployment", "gone", {"spec": {}})])
    assert len(notes) == 1 and notes[0].startswith("deployment/gone:") and "404" in notes[0]


def test_the_lease_is_the_deploy_lock(kube_api: FakeKubeAPI, fake_kube: FakeCluster) -> None:
    cluster = cluster_for(kube_api)
    now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    cluster.acquire_lease("alice@host1", 600, now=now)
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE_NAME}"
    assert fake_kube.objects[path]["spec"]["holderIdentity"] == "alice@host1"
    with pytest.raises(LockError, match="alice@host1"):
        cluster.acquire_lease("bob@host2", 600, now=now + dt.timedelta(seconds=60))
    cluster.acquire_lease("bob@host2", 600, now=now + dt.timedelta(seconds=601))  # alice's expired
    assert fake_kube.objects[path]["spec"]["holderIdentity"] == "bob@host2"
    cluster.release_lease("alice@host1")  # not hers any more: kept
    assert path in fake_kube.objects
    cluster.release_lease("bob@host2")
    assert path not in fake_kube.objects


def test_unknown_kinds_and_api_errors_are_sentences(kube_api: FakeKubeAPI) -> None:
    with pytest.raises(ClusterError, match="does not know how to apply a Pod"):
        object_path({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}}, NS)
    with pytest.raises(ClusterError, match="404"):
        cluster_for(kube_api)._call("DELETE", f"/api/v1/namespaces/{NS}/configmaps/none")


@pytest.mark.parametrize("values", sorted(VARIANTS))
def test_every_kind_the_chart_renders_has_its_api_path(tmp_path: Path, values: str) -> None:
    for obj in variant(tmp_path, VARIANTS[values]):
        path = object_path(obj, NS)
        group, _, version = obj["apiVersion"].rpartition("/")
        assert path.startswith("/api/v1/" if not group else f"/apis/{group}/{version}/"), path
        served = {(plural, kind) for plural, kind, _ in RESOURCES[(group, version)]}
        assert (path.split("/")[-2], obj["kind"]) in served, path


def test_api_paths_follow_the_rendered_api_version() -> None:
    cronjob = {"kind": "CronJob", "apiVersion": "batch/v1beta1", "metadata": {"name": "pruner"}}
    assert object_path(cronjob, NS) == f"/apis/batch/v1beta1/namespaces/{NS}/cronjobs/pruner"
    namespace = {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NS}}
    assert object_path(namespace, NS) == f"/api/v1/namespaces/{NS}"


def test_roll_out_undoes_every_rollout_when_the_gate_fails(tmp_path: Path, kube_api: FakeKubeAPI,
                                                           fake_kube: FakeCluster) -> None:
    cluster = cluster_for(kube_api)
    roll_out(cluster, rendered_objects(tmp_path), timeout_s=5)
    images = {path: obj["spec"]["template"]["spec"]["containers"][0]["image"]
              for path, obj in fake_kube.objects.items() if obj["kind"] in ("Deployment", "StatefulSet")}

    def gate() -> None:
        raise DeployError("The synthetic job did not finish in 180 s.")

    with pytest.raises(ClusterError) as caught:
        roll_out(cluster, rendered_objects(tmp_path, "2026-11-24_01"), timeout_s=5, gate=gate)
    assert "synthetic job did not finish" in str(caught.value)
    assert "Undid the rollouts of statefulset/queue, statefulset/storage, deployment/backend" in str(caught.value)
    assert caught.value.exit_status == 2
    after = {path: fake_kube.objects[path]["spec"]["template"]["spec"]["containers"][0]["image"] for path in images}
    assert after == images  # every workload is back on the old release


def test_roll_out_of_a_good_release_keeps_it(tmp_path: Path, kube_api: FakeKubeAPI, fake_kube: FakeCluster) -> None:
    cluster = cluster_for(kube_api)
    roll_out(cluster, rendered_objects(tmp_path), timeout_s=5)
    result = roll_out(cluster, rendered_objects(tmp_path, "2026-11-24_01"), timeout_s=5, gate=lambda: "job-1")
    assert len(result.rollouts) == 5
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/frontend"
    assert fake_kube.objects[path]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("2026-11-24_01")


def test_pods_logs_delete_and_restart(kube_api: FakeKubeAPI, fake_kube: FakeCluster) -> None:
    fake_kube.pods = [{"metadata": {"name": "frontend-1", "namespace": NS,
                                "labels": {"app.kubernetes.io/component": "frontend"}}}]
    fake_kube.logs = {"frontend-1": "GET / 200\n"}
    cluster = cluster_for(kube_api)
    assert [pod.metadata.name for pod in cluster.pods("frontend")] == ["frontend-1"]
    assert any("labelSelector=app.kubernetes.io%2Fname%3Disletnet%2Capp.kubernetes.io%2Fcomponent%3Dfrontend" in r.path
               for r in kube_api.requests)
    assert cluster.logs("frontend", 10) == "GET / 200\n"
    cluster.delete_pod("frontend-1", 30)  # the fake has no such object: gone is fine
    assert any(r.method == "DELETE" and "gracePeriodSeconds=30" in r.path for r in kube_api.requests)
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/frontend"
    fake_kube.objects[path] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "frontend",
                           "resourceVersion": "1", "generation": 1}, "spec": {"replicas": 1, "template": {"a": 1}}}
    rollout = cluster.restart("frontend", now=dt.datetime(2026, 12, 4, tzinfo=dt.UTC))
    assert rollout == Rollout("Deployment", "frontend", {"a": 1})
    assert cluster.restart("pruner") is None
    fake_kube.pods = []
    with pytest.raises(ClusterError, match="frontend has no pod"):
        cluster.logs("frontend")


def test_the_kubeconfig_comes_from_the_environment(tmp_path: Path, kube_api: FakeKubeAPI,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path)))
    assert KubeCluster.from_kubeconfig(NS).pods() == []
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ClusterError, match="Cannot load the Kubernetes configuration"):
        KubeCluster.from_kubeconfig(NS)
