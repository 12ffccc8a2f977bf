"""The Kubernetes API calls of a deploy, through the official `kubernetes` Python client: apply the
rendered objects (server-side apply), wait on the rollout of each workload it changed, undo those
rollouts, tell why a pod failed (its events and logs), and the deploy lock as a
`coordination.k8s.io/v1` Lease.

This is the cluster half of `engine: kubernetes` (isletops.engines.kubernetes). No real cluster
ran: the tests drive these calls against the fake API server of tests/fakes/kube_api.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from isletops.errors import DeployError, LockError

FIELD_MANAGER = "isletops"
LEASE_NAME = "isletops-deploy"
# kind -> (API path prefix, plural); the kinds the chart renders.
_RESOURCES: dict[str, tuple[str, str]] = {
    "Namespace": ("/api/v1", "namespaces"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "CronJob": ("/apis/{version}", "cronjobs"),
    "PodDisruptionBudget": ("/apis/{version}", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("/apis/{version}", "horizontalpodautoscalers"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "TriggerAuthentication": ("/apis/keda.sh/v1alpha1", "triggerauthentications"),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors"),
}
ROLLED_KINDS = ("Deployment", "StatefulSet")


class ClusterError(DeployError):
    """The Kubernetes API refused or failed a call, or a rollout did not finish."""


@dataclass(frozen=True)
class Rollout:
    """A workload an apply changed, and its pod template before, for the undo."""

    kind: str
    name: str
    previous_template: dict[str, Any] | None  # None: it did not exist before


def object_path(obj: dict[str, Any], namespace: str) -> str:
    """The API path of one object (`/apis/apps/v1/namespaces/NS/deployments/NAME`)."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    if kind not in _RESOURCES:
        raise ClusterError(f"isletops does not know how to apply a {kind}.")
    prefix, plural = _RESOURCES[kind]
    prefix = prefix.format(version=obj["apiVersion"])
    if kind == "Namespace":
        return f"{prefix}/{plural}/{name}"
    return f"{prefix}/namespaces/{namespace}/{plural}/{name}"


class KubeCluster:
    """One namespace of one cluster, through an `ApiClient`."""

    def __init__(self, namespace: str, api_client: k8s.ApiClient,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.namespace = namespace
        self.api = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.sleep, self.clock = sleep, clock

    @classmethod
    def from_kubeconfig(cls, namespace: str, kubeconfig: str | None = None, context: str | None = None) -> KubeCluster:
        """From a kubeconfig file ($KUBECONFIG or ~/.kube/config when None) or, inside a pod, its service account."""
        try:
            if kubeconfig is None and k8s_config.incluster_config.SERVICE_HOST_ENV_NAME in os.environ:
                k8s_config.load_incluster_config()
                return cls(namespace, k8s.ApiClient())
            # $KUBECONFIG is read now (the client reads it once, at import); it may list several files.
            path = kubeconfig or os.environ.get("KUBECONFIG") or None
            return cls(namespace, k8s_config.new_client_from_config(config_file=path, context=context))
        except (k8s_config.ConfigException, OSError) as error:
            raise ClusterError(f"Cannot load the Kubernetes configuration: {str(error).rstrip('.')}.",
                               "Set KUBECONFIG or pass the kubeconfig of the cluster.") from None

    # -- raw calls --------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, query: list[tuple[str, Any]] | None = None,
              content_type: str = "application/json") -> Any:
        try:
            return self.api.call_api(
                path, method, query_params=query or [], header_params={"Content-Type": content_type,
                                                                        "Accept": "application/json"},
                body=body, response_types_map={200: "object", 201: "object"}, auth_settings=["BearerToken"],
                _return_http_data_only=True, _preload_content=True,
            )
        except ApiException as error:
            raise ClusterError(f"The Kubernetes API answered {error.status} {error.reason} to {method} {path}: "
                               f"{_api_message(error)}.") from None

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self._call("GET", path))
        except ClusterError as error:
            if " 404 " in error.message:
                return None
            raise

    # -- apply and roll -----------------------------------------------------------------------

    def apply(self, objects: Iterable[dict[str, Any]]) -> list[Rollout]:
        """Server-side apply every object; returns the workloads whose pod template changed."""
        changed = []
        for obj in objects:
            path = object_path(obj, self.namespace)
            before = self._get(path) if obj["kind"] in ROLLED_KINDS else None
            after = self._call("PATCH", path, body=obj, query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                               content_type="application/apply-patch+yaml")
            if obj["kind"] in ROLLED_KINDS:
                old_template = before["spec"]["template"] if before else None
                if old_template != dict(after or {}).get("spec", {}).get("template"):
                    changed.append(Rollout(obj["kind"], obj["metadata"]["name"], old_template))
        return changed

    def rollout_done(self, rollout: Rollout) -> bool:
        """`kubectl rollout status`: the controller saw the change and every replica is updated and available."""
        obj = self._get(object_path({"kind": rollout.kind, "apiVersion": "apps/v1",
                                     "metadata": {"name": rollout.name}}, self.namespace)) or {}
        spec, status = obj.get("spec", {}), obj.get("status", {})
        wanted = spec.get("replicas", 1)
        if status.get("observedGeneration", 0) < obj.get("metadata", {}).get("generation", 1):
            return False
        return (status.get("updatedReplicas", 0) >= wanted and status.get("availableReplicas", 0) >= wanted
                and status.get("replicas", 0) <= wanted)

    def wait_rollouts(self, rollouts: Iterable[Rollout], timeout_s: float, poll_s: float = 2.0) -> None:
        """Wait until every rollout is done; on timeout a ClusterError names the first one not done
        and carries its failing pod's events and logs."""
        pending = list(rollouts)
        deadline = self.clock() + timeout_s
        while pending:
            pending = [rollout for rollout in pending if not self.rollout_done(rollout)]
            if not pending:
                return
            if self.clock() >= deadline:
                stuck = pending[0]
                raise ClusterError(f"The rollout of {stuck.kind.lower()}/{stuck.name} did not finish in "
                                   f"{timeout_s:.0f} s.", self.failure_report(stuck.name))
            self.sleep(poll_s)

    def undo(self, rollouts: Iterable[Rollout]) -> list[str]:
        """Put back the pod template each rollout replaced (`kubectl rollout undo`); a workload the
        deploy created is scaled to zero. Returns a note per undo that failed (the others still run)."""
        notes = []
        for rollout in rollouts:
            path = object_path({"kind": rollout.kind, "apiVersion": "apps/v1", "metadata": {"name": rollout.name}},
                               self.namespace)
            patch = ({"spec": {"template": rollout.previous_template}} if rollout.previous_template is not None
                     else {"spec": {"replicas": 0}})
            try:
                self._call("PATCH", path, body=patch, content_type="application/merge-patch+json")
            except ClusterError as error:
                notes.append(f"{rollout.kind.lower()}/{rollout.name}: {error.message}")
        return notes

    # -- why it failed --------------------------------------------------------------------------

    def failure_report(self, component: str, tail: int = 40) -> str:
        """The events and last log lines of the component's first pod that is not ready."""
        pods = self.pods(component)
        failing = [pod for pod in pods if not _pod_ready(pod)] or pods
        if not failing:
            return f"No pod of {component} exists; see 'kubectl -n {self.namespace} describe {component}'."
        pod = failing[0]
        name = pod.metadata.name
        events = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}")
        lines = [f"Pod {name}:"]
        lines += [f"  event {event.type} {event.reason}: {event.message}" for event in events.items]
        try:
            text = self.logs(component, tail, name)
        except ClusterError as error:
            text = f"(no log: {error.message})"
        lines += [f"  log: {line}" for line in text.splitlines()[-tail:]]
        return "\n".join(lines)

    # -- pods ---------------------------------------------------------------------------------------

    def pods(self, component: str | None = None) -> list[Any]:
        """The instance's pods (one component's when named), as the client's V1Pod objects."""
        selector = "app.kubernetes.io/name=isletnet"
        if component:
            selector += f",app.kubernetes.io/component={component}"
        try:
            return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)
        except ApiException as error:
            raise ClusterError(f"Cannot list the pods of namespace {self.namespace}: {error.reason}.") from None

    def logs(self, component: str, tail: int = 100, pod_name: str = "") -> str:
        """The last `tail` log lines of one pod of `component` (the named one, else the first)."""
        names = [pod_name] if pod_name else [pod.metadata.name for pod in self.pods(component)]
        if not names:
            raise ClusterError(f"{component} has no pod in namespace {self.namespace}.")
        try:
            # Raw: the client's own decoding of text/plain gives the repr of bytes.
            response = self.core.read_namespaced_pod_log(names[0], self.namespace, tail_lines=tail,
                                                         _preload_content=False)
        except ApiException as error:
            raise ClusterError(f"Cannot read the log of pod {names[0]}: {error.reason}.") from None
        return str(response.data.decode(errors="replace"))

    def delete_pod(self, name: str, grace_s: int) -> None:
        """Delete one pod with `grace_s` to stop; gone is fine (its controller may replace it)."""
        path = f"/api/v1/namespaces/{self.namespace}/pods/{name}"
        try:
            self._call("DELETE", path, query=[("gracePeriodSeconds", grace_s)])
        except ClusterError as error:
            if " 404 " not in error.message:
                raise

    def restart(self, name: str, now: dt.datetime | None = None) -> Rollout | None:
        """`kubectl rollout restart`: a new pod template annotation; None for what is not a workload."""
        for kind in ROLLED_KINDS:
            path = object_path({"kind": kind, "apiVersion": "apps/v1", "metadata": {"name": name}}, self.namespace)
            current = self._get(path)
            if current is None:
                continue
            stamp = _micro_time(now or dt.datetime.now(dt.UTC))
            patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
            self._call("PATCH", path, body=patch, content_type="application/strategic-merge-patch+json")
            return Rollout(kind, name, current["spec"]["template"])
        return None

    # -- the deploy lock ----------------------------------------------------------------------------

    def acquire_lease(self, holder: str, duration_s: int, now: dt.datetime | None = None) -> None:
        """Take the Lease `isletops-deploy` of the namespace: create it, or take it over when the
        holder's lease expired; a live one held by someone else is a LockError naming them."""
        now = now or dt.datetime.now(dt.UTC)
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        spec = {"holderIdentity": holder, "leaseDurationSeconds": duration_s,
                "acquireTime": _micro_time(now), "renewTime": _micro_time(now)}
        metadata: dict[str, str] = {"name": LEASE_NAME, "namespace": self.namespace}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        current = self._get(f"{path}/{LEASE_NAME}")
        if current is None:
            self._call("POST", path, body=body)
            return
        held = current.get("spec", {})
        if _live_holder(held, now) not in ("", holder):
            raise LockError(f"Another operator holds the lock of namespace {self.namespace}: "
                            f"{held['holderIdentity']} since {held.get('acquireTime')}.",
                            "Wait for that deploy, or for 'isletops lock release' where it was taken by hand; "
                            f"after a crash: kubectl -n {self.namespace} delete lease {LEASE_NAME}.")
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        self._call("PUT", f"{path}/{LEASE_NAME}", body=body)

    def release_lease(self, holder: str) -> bool:
        """Give the Lease back (only our own; gone is fine). True when it was ours and is gone."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{LEASE_NAME}"
        current = self._get(path)
        if current and current.get("spec", {}).get("holderIdentity") == holder:
            self._call("DELETE", path)
            return True
        return False

    def lease_holder(self, now: dt.datetime | None = None) -> str:
        """The holder of the namespace's Lease while it is live ("" when there is none or it expired)."""
        current = self._get(f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{LEASE_NAME}")
        return _live_holder((current or {}).get("spec", {}), now or dt.datetime.now(dt.UTC))


def _live_holder(spec: dict[str, Any], now: dt.datetime) -> str:
    """The Lease spec's holder while its lease runs (renewTime + leaseDurationSeconds after `now`), else ""."""
    renewed = _parse_micro_time(spec.get("renewTime"))
    if not renewed or renewed + dt.timedelta(seconds=spec.get("leaseDurationSeconds") or 0) <= now:
        return ""
    return str(spec.get("holderIdentity") or "")


def _pod_ready(pod: Any) -> bool:
    conditions = pod.status.conditions or [] if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _micro_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


@dataclass(frozen=True)
class ReleaseResult:
    """What `roll_out` changed (the workloads whose pods were replaced)."""

    rollouts: list[Rollout]


def roll_out(cluster: KubeCluster, objects: list[dict[str, Any]], timeout_s: float,
             gate: Callable[[], object] | None = None) -> ReleaseResult:
    """Apply a release, wait on every rollout it started, then run the end-to-end `gate`.

    On any failure every rollout this call changed is undone, and a ClusterError (exit 2) says what
    failed with the failing pod's events and logs, plus a note for each undo that did not go through.
    """
    rollouts = cluster.apply(objects)
    try:
        cluster.wait_rollouts(rollouts, timeout_s)
        if gate is not None:
            gate()
    except Exception as error:
        notes = cluster.undo(rollouts)
        undone = ", ".join(f"{r.kind.lower()}/{r.name}" for r in rollouts) or "nothing"
        message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        detail = getattr(error, "hint", None) or ""
        hint = f"Undid the rollouts of {undone}." + (f" Undo failed: {'; '.join(notes)}." if notes else "")
        raise ClusterError(str(message), f"{hint}\n{detail}".rstrip()) from None
    return ReleaseResult(rollouts)
