"""`engine: kubernetes`: the Engine protocol over one namespace of a Kubernetes cluster.

The release is the instance's rendering (isletops.kube). `prepare` renders it and `replace`
applies it with server-side apply (isletops.kube.cluster). Kubernetes rolls each workload over
itself: Deployments start first and have `maxUnavailable: 0`. `wait_healthy` is `kubectl rollout
status`, and a failure carries the failing pod's events and logs. The deploy's rollback
re-applies the previous release, which undoes every rollout the deploy changed.

The deploy lock is cluster-wide: besides the instance's file lock, the deploy takes the Lease
`isletops-deploy` of the namespace (`take_cluster_lock`), so two admins on two hosts cannot deploy
at once. The e2e gate goes through the Ingress: the instance's `public_url`.
No real cluster ran: the tests drive a fake API server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from isletops.config import InstanceConfig, SiteConfig
from isletops.engines.base import HealthPolicy, ServicePlan, ServiceState, ServiceStep, Strategy, running_tags
from isletops.engines.health import HealthFailed
from isletops.errors import ConfigError
from isletops.kube.chart import namespace_for, render_kubernetes
from isletops.kube.cluster import ClusterError, KubeCluster, Rollout
from isletops.kube.source import KUBERNETES_COMPONENTS

COMPONENT_LABEL = "org.isletnet.component"
# A deploy's Lease outlives no crash by more than this; `kubectl delete lease isletops-deploy` frees it sooner.
LEASE_SECONDS = 3600
HOLD_BY_HAND_SECONDS = 365 * 24 * 3600  # `isletops lock acquire`: until released
# Dependency levels: data first, then what uses it, then the web app.
LEVELS: tuple[tuple[str, ...], ...] = (("storage", "queue"), ("backend", "shepherd", "pruner"), ("frontend",))


class KubernetesEngine:
    """One instance run by Kubernetes, in namespace `isletnet-<instance>`."""

    name = "kubernetes"

    def __init__(self, site: SiteConfig, instance: InstanceConfig, cluster: KubeCluster | None = None) -> None:
        self.site = site
        self.instance = instance
        self.cluster = cluster or KubeCluster.from_kubeconfig(namespace_for(instance))
        self.objects: list[dict[str, Any]] = []
        self.rollouts: dict[str, Rollout] = {}
        self.applied_shared = False

    @property
    def render_dir(self) -> Path:
        return self.instance.directory / "kubernetes"

    def take_cluster_lock(self, holder: str, by_hand: bool = False) -> Callable[[], None]:
        """Take the namespace's Lease for a deploy (LockError when another holds it); returns its
        release. A deploy's lease expires after LEASE_SECONDS (a crashed deploy frees it); a hold
        by hand lasts HOLD_BY_HAND_SECONDS, until `isletops lock release`."""
        self.cluster.acquire_lease(holder, HOLD_BY_HAND_SECONDS if by_hand else LEASE_SECONDS)

        def release() -> None:
            self.cluster.release_lease(holder)

        return release

    def cluster_lock_holder(self) -> str:
        return self.cluster.lease_holder()

    def release_cluster_lock(self, holder: str) -> bool:
        return self.cluster.release_lease(holder)

    # -- host and images: the cluster's nodes pull from the registry ---------------------------
    def data_root(self) -> Path | None:
        return None

    def image_present(self, ref: str) -> bool:
        return True  # the nodes pull what they lack; the registry check happens before the deploy

    def pull(self, ref: str) -> None:
        return None

    def push(self, ref: str) -> None:
        raise ConfigError("A Kubernetes instance does not push images.", "Run 'isletops release' on a build host.")

    def tag(self, source: str, target: str) -> None:
        raise ConfigError("A Kubernetes instance does not tag images.", "Run 'isletops release' on a build host.")

    def prune_releases(self, registry: str, keep: int) -> list[str]:
        return ["the cluster's nodes prune their own images (kubelet image garbage collection)"]

    # -- a release ------------------------------------------------------------------------------
    def plan(self, tag: str, registry: str) -> ServicePlan:
        steps = tuple(ServiceStep(service, Strategy.RECREATE) for level in LEVELS for service in level)
        return ServicePlan(steps=steps, levels=LEVELS)

    def verify(self, tag: str, registry: str) -> None:
        """Nothing beyond what `plan` read: the kubelets pull, and a pod that cannot says so in its state."""

    def prepare(self, tag: str, registry: str) -> None:
        rendering = render_kubernetes(self.instance, tag, self.render_dir, registry=registry)
        self.objects = rendering.objects
        self.rollouts = {}
        self.applied_shared = False

    def _objects_of(self, services: Sequence[str]) -> list[dict[str, Any]]:
        wanted = [o for o in self.objects if o["metadata"].get("labels", {}).get(COMPONENT_LABEL) in services]
        if not self.applied_shared:  # namespace, ConfigMap, Ingress: once, with the first services
            wanted = [o for o in self.objects if COMPONENT_LABEL not in o["metadata"].get("labels", {})] + wanted
        return wanted

    def _workload(self, service: str) -> dict[str, Any] | None:
        return next((o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet", "CronJob")
                     and o["metadata"]["name"] == service), None)

    def runs_image(self, service: str, ref: str) -> bool:
        states = [s for s in self.service_states([service]) if s.state != "missing"]
        return bool(states) and all(s.is_ready and s.image == ref for s in states)

    def running_release(self, services: Sequence[str]) -> dict[str, list[str]]:
        return running_tags(self.service_states(services), services)

    # -- rolling over: Kubernetes replaces the pods itself ----------------------------------------
    def replace(self, services: Sequence[str], drain_s: int) -> None:
        if not self.objects:
            raise ConfigError("Nothing is prepared to apply.", "prepare() renders the release first.")
        for rollout in self.cluster.apply(self._objects_of(services)):
            self.rollouts[rollout.name] = rollout
        self.applied_shared = True

    def start_beside(self, service: str) -> list[str]:
        old = [s.name for s in self.service_states([service]) if s.state != "missing"]
        self.replace([service], 0)
        return old

    def wait_healthy(self, services: Sequence[str], policy: HealthPolicy, only: Sequence[str] = ()) -> None:
        for service in services:
            rollout = self.rollouts.get(service)
            if rollout is None:
                continue  # unchanged, or a CronJob (its pods are Jobs, checked by the pruner probe)
            try:
                self.cluster.wait_rollouts([rollout], policy.timeout_s, poll_s=policy.poll_s)
            except ClusterError as error:
                raise HealthFailed(service, error.message, error.hint or "") from None

    def drain(self, instance_name: str) -> None:
        return None  # a terminating pod leaves its Service's endpoints at once

    def stop(self, instance_name: str, drain_s: int) -> None:
        self.cluster.delete_pod(instance_name, drain_s)

    # -- reading ----------------------------------------------------------------------------------
    def service_states(self, services: Sequence[str] = ()) -> list[ServiceState]:
        wanted = list(services) or list(KUBERNETES_COMPONENTS)
        states = [state for state in (_state(pod) for pod in self.cluster.pods()) if state.service in wanted]
        seen = {state.service for state in states}
        states += [ServiceState(service, "", "missing", None, 0, None, "", None, "")
                   for service in wanted if service not in seen and service != "pruner"]
        return states

    def logs(self, service: str, tail: int = 100, instance_name: str = "") -> str:
        return self.cluster.logs(service, tail, instance_name)

    def show_logs(self, services: Sequence[str], tail: int, follow: bool = False) -> str:
        if follow:
            raise ConfigError(
                "isletops logs --follow is not available on engine kubernetes.",
                f"Run: kubectl logs -f -n {self.cluster.namespace} -l app.kubernetes.io/component=SERVICE")
        return "".join("".join(f"{service} | {line}\n" for line in self.logs(service, tail).splitlines())
                       for service in services if service in KUBERNETES_COMPONENTS)  # no edge: the Ingress

    def restart(self, services: Sequence[str], policy: HealthPolicy) -> list[ServiceState]:
        for service in services:
            rollout = self.cluster.restart(service)
            if rollout:
                self.rollouts[service] = rollout
        self.wait_healthy(services, policy)
        return self.service_states(services)


def _state(pod: Any) -> ServiceState:
    labels = pod.metadata.labels or {}
    statuses = (pod.status.container_statuses or []) if pod.status else []
    status = statuses[0] if statuses else None
    ready = bool(status and status.ready)
    phase = (pod.status.phase or "Pending") if pod.status else "Pending"
    state = {"Running": "running", "Pending": "created", "Succeeded": "exited", "Failed": "exited"}.get(phase, "dead")
    waiting = status.state.waiting if status and status.state else None
    if waiting and waiting.reason == "CrashLoopBackOff":
        state = "restarting"
    started = pod.status.start_time if pod.status else None
    return ServiceState(
        service=labels.get(COMPONENT_LABEL, ""), name=pod.metadata.name, state=state,
        health="healthy" if ready else ("starting" if state in ("created", "running") else "unhealthy"),
        restart_count=status.restart_count if status else 0,
        started_at=started if isinstance(started, dt.datetime) else None,
        image=pod.spec.containers[0].image if pod.spec and pod.spec.containers else "",
        exit_code=None, last_health_output=(waiting.message or waiting.reason or "") if waiting else "",
    )
