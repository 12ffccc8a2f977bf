"""A small fake Kubernetes API server on 127.0.0.1 for offline tests: no real cluster runs here.

It answers API discovery (`/api`, `/apis`, `/apis/<group>/<version>`, `/version`) for the kinds
the IsletNet chart uses, so `kubectl create --dry-run=client` can map kinds to resources, and
keeps every request it got (`requests`) so a test can check what a client asked. `FakeCluster`
adds a small object store for the deploy calls. It is not a Kubernetes: it validates nothing and
runs no controller (a workload's status is set when it is written).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.loopback_http import LoopbackServer, QuietHandler, serve_on_loopback

# (group, version) -> [(resource, kind, namespaced)]
RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True),
                 ("secrets", "Secret", True), ("services", "Service", True), ("pods", "Pod", True),
                 ("events", "Event", True), ("persistentvolumeclaims", "PersistentVolumeClaim", True)],
    ("apps", "v1"): [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True),
                     ("replicasets", "ReplicaSet", True)],
    ("batch", "v1"): [("cronjobs", "CronJob", True), ("jobs", "Job", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("networking.k8s.io", "v1"): [("ingresses", "Ingress", True), ("networkpolicies", "NetworkPolicy", True)],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("keda.sh", "v1alpha1"): [("scaledobjects", "ScaledObject", True),
                              ("triggerauthentications", "TriggerAuthentication", True)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True)],
}


@dataclass
class Recorded:
    method: str
    path: str
    body: Any = None


@dataclass
class FakeKubeAPI:
    """The server and what it saw."""

    server: LoopbackServer
    requests: list[Recorded] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def kubeconfig(self, directory: Path) -> Path:
        """A kubeconfig pointing at this server (no credentials: the fake asks for none)."""
        path = directory / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
        }))
        return path


def _resource_list(group: str, version: str) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}".lstrip("/"),
            "resources": [{"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                           "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                          for name, kind, namespaced in RESOURCES[(group, version)]]}


def discovery(path: str) -> dict[str, Any] | None:
    """The discovery document at `path`, or None."""
    if path == "/version":
        return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    if path == "/api/v1":
        return _resource_list("", "v1")
    if path == "/apis":
        groups = [{"name": group, "versions": [{"groupVersion": f"{group}/{version}", "version": version}],
                   "preferredVersion": {"groupVersion": f"{group}/{version}", "version": version}}
                  for group, version in RESOURCES if group]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in RESOURCES:
        return _resource_list(parts[1], parts[2])
    return None


@contextlib.contextmanager
def fake_kube_api(extra: Any = None) -> Iterator[FakeKubeAPI]:
    """Serve discovery, plus whatever `extra(method, path, body)` answers (a (status, body) pair or None)."""
    state: dict[str, FakeKubeAPI] = {}

    class Handler(QuietHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw.strip() else None
            path = self.path.split("?")[0]
            state["api"].requests.append(Recorded(self.command, self.path, body))
            answer = extra(self.command, self.path, body) if extra else None
            if answer is None:
                document = discovery(path) if self.command == "GET" else None
                answer = (200, document) if document is not None else (404, {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                    "message": f"{path} not found"})
            status, payload = answer
            raw_text = isinstance(payload, RawText)
            data = str(payload).encode() if raw_text else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if raw_text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815 - http.server's names

    with serve_on_loopback(Handler) as server:
        state["api"] = FakeKubeAPI(server)
        yield state["api"]


def kubectl_env(api: FakeKubeAPI) -> dict[str, str]:
    """Environment for a kubectl run against the fake (own kubeconfig and an empty cache)."""
    directory = Path(tempfile.mkdtemp(prefix="fake-kube-"))
    return {"KUBECONFIG": str(api.kubeconfig(directory)), "HOME": str(directory), "PATH": "/usr/bin:/bin"}


@dataclass
class FakeCluster:
    """Objects kept by API path, enough for the calls of isletops.kube.cluster: GET, server-side
    apply and merge PATCH (no real merge: an apply replaces the object, a merge patch replaces the
    keys it names under `spec`), POST/PUT/DELETE, and pod, event and log listings set by the test.

    `rollouts_finish` False leaves every changed workload with no available replica (a stuck rollout).
    """

    rollouts_finish: bool = True
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    version: int = 0

    def _stamp(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        self.version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self.version)
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        changed = old is None or old.get("spec") != obj.get("spec")
        meta["generation"] = generation + 1 if changed else generation
        if obj.get("kind") in ("Deployment", "StatefulSet"):
            replicas = obj.get("spec", {}).get("replicas", 1)
            available = replicas if self.rollouts_finish or not changed else 0
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": replicas,
                             "updatedReplicas": replicas, "availableReplicas": available}
        return obj

    def __call__(self, method: str, raw_path: str, body: Any) -> tuple[int, Any] | None:
        path = raw_path.split("?")[0]
        if method == "GET" and path.endswith("/pods"):
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods}
        if method == "GET" and path.endswith("/events"):
            name = raw_path.split("involvedObject.name%3D")[-1] if "involvedObject.name" in raw_path else ""
            return 200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": self.events.get(name, [])}
        if method == "GET" and path.endswith("/log"):
            return 200, RawText(self.logs.get(path.split("/")[-2], ""))
        old = self.objects.get(path)
        if method == "GET":
            return (200, old) if old is not None else None
        if method == "PATCH" and isinstance(body, dict) and "kind" in body:  # server-side apply
            self.objects[path] = self._stamp(json.loads(json.dumps(body)), old)
            return 200, self.objects[path]
        if method == "PATCH":  # merge patch of spec keys
            if old is None:
                return None
            new = json.loads(json.dumps(old))
            new["spec"].update(body.get("spec", {}))
            self.objects[path] = self._stamp(new, old)
            return 200, self.objects[path]
        if method == "POST":
            target = f"{path}/{body['metadata']['name']}"
            if target in self.objects:
                return 409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists",
                             "code": 409, "message": "already exists"}
            self.objects[target] = self._stamp(body, None)
            return 201, self.objects[target]
        if method == "PUT":
            if old is None or old["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
                return 409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                             "code": 409, "message": "the object has been modified"}
            self.objects[path] = self._stamp(body, old)
            return 200, self.objects[path]
        if method == "DELETE" and old is not None:
            del self.objects[path]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
        return None


class RawText(str):
    """A body sent as text/plain, not JSON (pod logs)."""
