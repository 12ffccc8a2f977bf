"""The Kubernetes objects of one IsletNet instance, as `Part`s of the object model (isletops.kube.model).

Containers get the image, environment, ports, probes and stop grace of the compose rendering
(isletops.kube.source); everything an admin tunes is a `Value` of values.yaml. API versions follow
the server like Helm's `.Capabilities` (`kube_version` for the plain manifests): CronJob batch/v1
and PodDisruptionBudget policy/v1 from 1.21, HPA autoscaling/v2 from 1.23.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from isletops.kube.model import Helm, OnlyIf, Part, Value, lookup, merged_mapping
from isletops.kube.source import (
    CONFIGMAP_NAME,
    QUEUE_DEPTH_QUERY,
    SECRET_NAME,
    STATEFUL_COMPONENTS,
    Service,
)
from services.common import queue_metrics

# Components allowed to reach the queue and storage (NetworkPolicy).
DATA_CLIENTS: tuple[str, ...] = ("backend", "shepherd", "pruner")
# /tmp inside the containers (an emptyDir), not on this host.
CONTAINER_TMP = "/tmp"  # nosec B108
# Writable folders of a read-only root filesystem (emptyDir), by component.
WRITABLE_PATHS: dict[str, tuple[str, ...]] = {
    "storage": (CONTAINER_TMP, "/etc/seaweedfs"),
    "queue": (CONTAINER_TMP, "/var/run/postgresql"),
    "backend": (CONTAINER_TMP, "/var/lib/isletnet"),
    "shepherd": (CONTAINER_TMP, "/var/lib/isletnet"),
    "pruner": (CONTAINER_TMP, "/var/lib/isletnet"),
    "frontend": (CONTAINER_TMP, "/var/lib/isletnet/nginx"),
}
PORT_NAMES: dict[int, str] = {8333: "s3", 5432: "postgres", 8000: "http", 8080: "http"}
DATA_MOUNT = "/data"
# The component whose /metrics Prometheus scrapes (services.common.queue_metrics).
METRICS_COMPONENT = "backend"
# (API group/version, kind, first minor release that serves it, the older version)
_API_VERSIONS: dict[str, tuple[str, int, str]] = {
    "CronJob": ("batch/v1", 21, "batch/v1beta1"),
    "PodDisruptionBudget": ("policy/v1", 21, "policy/v1beta1"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", 23, "autoscaling/v2beta2"),
}


def parse_kube_version(text: str) -> tuple[int, int]:
    """'1.20' or 'v1.33.2' as (major, minor)."""
    from isletops.errors import ConfigError

    parts = text.lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise ConfigError(f"'{text}' is not a Kubernetes version.", "Write it like 1.33 or v1.20.4.") from None
    if (major, minor) < (1, 20):
        raise ConfigError(f"Kubernetes {text} is too old for the chart.", "It needs 1.20 or newer (Ingress v1).")
    return major, minor


def api_version(kind: str, kube_version: tuple[int, int]) -> Helm:
    """The apiVersion of `kind`: Helm asks the server's capabilities, the plain manifests `kube_version`."""
    current, since, older = _API_VERSIONS[kind]
    template = (f'{{{{ if .Capabilities.APIVersions.Has "{current}/{kind}" }}}}{current}'
                f"{{{{ else }}}}{older}{{{{ end }}}}")
    return Helm(template, current if kube_version >= (1, since) else older)


NAMESPACE = Helm("{{ .Release.Namespace | toJson }}", Value("namespace.name"))


def secret_name(values: dict[str, Any]) -> str:
    """The Secret the pods read: the admin's existing one, else the generated one."""
    return str(lookup(values, "secrets.existingSecret") or SECRET_NAME)


def image_ref(service: Service, values: dict[str, Any]) -> str:
    """`<image.repository>isletnet-<component>:<image.tag>`, compose's `${REPOSITORY-}...:${TAG}`."""
    return f"{lookup(values, 'image.repository')}{service.image_name}:{lookup(values, 'image.tag')}"


def config_checksum(values: dict[str, Any]) -> str:
    """Changes with the settings, so that pods restart when the ConfigMap changes."""
    text = json.dumps(lookup(values, "config"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


SECRET_REF = Helm(f'{{{{ .Values.secrets.existingSecret | default "{SECRET_NAME}" | toJson }}}}', secret_name)


def selector_labels(component: str) -> dict[str, Any]:
    return {"app.kubernetes.io/name": "isletnet", "app.kubernetes.io/instance": Value("instance"),
            "app.kubernetes.io/component": component}


def labels(component: str | None = None) -> dict[str, Any]:
    """Kubernetes' recommended labels plus compose's org.isletnet.* labels."""
    result: dict[str, Any] = {"app.kubernetes.io/name": "isletnet", "app.kubernetes.io/instance": Value("instance")}
    if component:
        result["app.kubernetes.io/component"] = component
    result.update({"app.kubernetes.io/version": Value("image.tag", text=True),
                   "app.kubernetes.io/managed-by": Helm("{{ .Release.Service | toJson }}", "isletops"),
                   "org.isletnet.instance": Value("instance")})
    if component:
        result["org.isletnet.component"] = component
    return result


def metadata(name: str, component: str | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": labels(component)}


def env(service: Service) -> list[dict[str, Any]]:
    """The compose environment: settings from the ConfigMap, secrets from the Secret."""
    result = []
    for var in service.env:
        source: dict[str, Any]
        if var.kind == "config":
            source = {"configMapKeyRef": {"name": CONFIGMAP_NAME, "key": var.name}}
        else:
            source = {"secretKeyRef": {"name": SECRET_REF, "key": var.name}}
        result.append({"name": var.name, "valueFrom": source})
    return result


def container(service: Service, resources: Any, args: list[str] | None = None, probes: bool = True) -> dict[str, Any]:
    component = service.component
    spec: dict[str, Any] = {
        "name": component,
        "image": Helm(f'{{{{ printf "%s{service.image_name}:%s" .Values.image.repository .Values.image.tag'
                      f" | toJson }}}}", lambda values: image_ref(service, values)),
        "imagePullPolicy": Value("image.pullPolicy"),
    }
    if args:
        spec["args"] = args
    if service.ports:
        spec["ports"] = [{"name": PORT_NAMES.get(port, f"p{port}"), "containerPort": port, "protocol": "TCP"}
                         for port in service.ports]
    if service.env:
        spec["env"] = env(service)
    if probes and service.probe:
        spec.update(service.probe.probes())
    spec["resources"] = resources
    spec["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": Value("securityContext.readOnlyRootFilesystem"),
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = [{"name": _volume_name(path), "mountPath": path} for path in WRITABLE_PATHS[component]]
    if component in STATEFUL_COMPONENTS:
        mounts.append({"name": "data", "mountPath": DATA_MOUNT})
    spec["volumeMounts"] = mounts
    return spec


def _volume_name(path: str) -> str:
    return "tmp" if path == CONTAINER_TMP else path.strip("/").replace("/", "-").replace("_", "-")


def pod_spec(service: Service, resources: Any, **extra: Any) -> dict[str, Any]:
    """Pod spec: non-root numeric ids from the values, emptyDirs for the writable folders."""
    prefix = "queueRunAs" if service.component == "queue" else "runAs"
    spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": Value(f"securityContext.{prefix}User"),
            "runAsGroup": Value(f"securityContext.{prefix}Group"),
            "fsGroup": Value(f"securityContext.{prefix}Group"),
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "imagePullSecrets": Value("image.pullSecrets"),
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": service.stop_grace_s,
    }
    args = extra.pop("args", None)
    spec.update(extra)
    spec["containers"] = [container(service, resources, args=args, probes=extra.get("restartPolicy") is None)]
    spec["volumes"] = [{"name": _volume_name(path), "emptyDir": {}} for path in WRITABLE_PATHS[service.component]]
    return spec


CONFIG_CHECKSUM = {"checksum/config": Helm('{{ .Values.config | toJson | sha256sum | toJson }}', config_checksum)}


def _pod_template(service: Service, resources: Any, **extra: Any) -> dict[str, Any]:
    """The backend's pods also carry the scrape annotations of `metrics` (while enabled)."""
    annotations: Any = CONFIG_CHECKSUM
    if service.component == METRICS_COMPONENT:
        annotations = merged_mapping(CONFIG_CHECKSUM, "metrics.podAnnotations", condition="metrics.enabled")
    return {"metadata": {"labels": labels(service.component), "annotations": annotations},
            "spec": pod_spec(service, resources, **extra)}


def _workload(kind: str, service: Service, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A Deployment or StatefulSet of `service`: `spec` first, then its selector and pod template."""
    component = service.component
    return {
        "apiVersion": "apps/v1", "kind": kind, "metadata": metadata(component, component),
        "spec": {**spec, "selector": {"matchLabels": selector_labels(component)},
                 "template": _pod_template(service, Value(f"{component}.resources"), **extra)},
    }


def deployment(service: Service, replicas: Any, **extra: Any) -> dict[str, Any]:
    """Rolls start-first: a new pod must be ready before an old one stops."""
    return _workload("Deployment", service, {
        "replicas": replicas, "revisionHistoryLimit": 10,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    }, **extra)


def statefulset(service: Service) -> dict[str, Any]:
    """One pod with its PVC `data` on /data; the claim names a StorageClass only when one is set."""
    component = service.component
    class_path = f"{component}.storage.storageClassName"
    workload = _workload("StatefulSet", service, {"serviceName": component, "replicas": 1})
    workload["spec"]["volumeClaimTemplates"] = [{
        "metadata": {"name": "data", "labels": selector_labels(component)},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": OnlyIf(f".Values.{class_path}", Value(class_path), Value(class_path)),
            "resources": {"requests": {"storage": Value(f"{component}.storage.size")}},
        },
    }]
    return workload


def k8s_service(service: Service) -> dict[str, Any]:
    component = service.component
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": metadata(component, component),
        "spec": {"type": "ClusterIP", "selector": selector_labels(component),
                 "ports": [{"name": PORT_NAMES.get(port, f"p{port}"), "port": port, "targetPort": port,
                            "protocol": "TCP"} for port in service.ports]},
    }


def pdb(component: str, budget: dict[str, Any], kube: tuple[int, int]) -> dict[str, Any]:
    return {"apiVersion": api_version("PodDisruptionBudget", kube), "kind": "PodDisruptionBudget",
            "metadata": metadata(component, component),
            "spec": {**budget, "selector": {"matchLabels": selector_labels(component)}}}


def data_network_policy(service: Service) -> dict[str, Any]:
    """Only the backend, shepherd and pruner reach a data service (queue, storage)."""
    component = service.component
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": metadata(f"{component}-clients", component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(component)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "isletnet",
                                                          "app.kubernetes.io/instance": Value("instance")},
                                          "matchExpressions": [{"key": "app.kubernetes.io/component",
                                                                "operator": "In", "values": list(DATA_CLIENTS)}]}}],
                "ports": [{"protocol": "TCP", "port": port} for port in service.ports],
            }],
        },
    }


def keda_network_policy(queue: Service) -> dict[str, Any]:
    """KEDA's operator runs the trigger's query itself, so it may reach the queue too."""
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata("queue-keda", "queue"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels("queue")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": Value("shepherd.autoscaling.keda.operatorNamespace")}}}],
                "ports": [{"protocol": "TCP", "port": port} for port in queue.ports]}],
        },
    }


def ingress(all_services: dict[str, Service], values: dict[str, Any]) -> dict[str, Any]:
    """/ to the frontend and /api to the backend, TLS from a Secret (cert-manager optional)."""
    issuer = lookup(values, "ingress.certManager.clusterIssuer")
    plain_annotations = dict(lookup(values, "ingress.annotations") or {})
    if issuer:
        plain_annotations["cert-manager.io/cluster-issuer"] = issuer
    annotations = Helm("{{ $a := deepCopy (.Values.ingress.annotations | default dict) }}"
                       "{{ with .Values.ingress.certManager.clusterIssuer }}"
                       '{{ $_ := set $a "cert-manager.io/cluster-issuer" . }}{{ end }}{{ toJson $a }}',
                       plain_annotations)

    def path(prefix: str, component: str) -> dict[str, Any]:
        return {"path": prefix, "pathType": "Prefix", "backend": {
            "service": {"name": component, "port": {"number": all_services[component].ports[0]}}}}

    meta = metadata("isletnet")
    meta["annotations"] = annotations
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
        "spec": {
            "ingressClassName": Value("ingress.className"),
            "tls": [{"hosts": [Value("ingress.host")], "secretName": Value("ingress.tlsSecretName")}],
            "rules": [{"host": Value("ingress.host"), "http": {"paths": [
                path("/api", "backend"), path("/", "frontend")]}}],
        },
    }


def pruner_cronjob(service: Service, kube: tuple[int, int]) -> dict[str, Any]:
    """The retention loop as a CronJob: one pass (`--once`) per schedule, never two at once."""
    template = _pod_template(service, Value("pruner.resources"), restartPolicy="Never",
                             args=["python", "-m", "services.pruner", "--once"])
    return {
        "apiVersion": api_version("CronJob", kube), "kind": "CronJob", "metadata": metadata("pruner", "pruner"),
        "spec": {
            "schedule": Value("pruner.schedule"),
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": Value("pruner.successfulJobsHistoryLimit"),
            "failedJobsHistoryLimit": Value("pruner.failedJobsHistoryLimit"),
            "jobTemplate": {"metadata": {"labels": labels("pruner")},
                            "spec": {"backoffLimit": 1, "template": template}},
        },
    }


def shepherd_hpa(kube: tuple[int, int]) -> dict[str, Any]:
    """replicas = clamp(ceil(queue depth / targetPerWorker), min, max): an AverageValue target."""
    scaling = "shepherd.autoscaling"
    return {
        "apiVersion": api_version("HorizontalPodAutoscaler", kube), "kind": "HorizontalPodAutoscaler",
        "metadata": metadata("shepherd", "shepherd"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shepherd"},
            "minReplicas": Value(f"{scaling}.minReplicas"),
            "maxReplicas": Value(f"{scaling}.maxReplicas"),
            "metrics": [{"type": "External", "external": {
                "metric": {"name": Value(f"{scaling}.externalMetric.name"),
                           "selector": {"matchLabels": Value(f"{scaling}.externalMetric.selector")}},
                "target": {"type": "AverageValue", "averageValue": Value(f"{scaling}.targetPerWorker", text=True)},
            }}],
        },
    }


def service_monitor(service: Service) -> dict[str, Any]:
    """The Prometheus Operator's scrape of the backend's /metrics (its Service's `http` port)."""
    component = service.component
    meta = metadata(component, component)
    meta["labels"] = merged_mapping(labels(component), "metrics.serviceMonitor.labels")
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": meta,
        "spec": {
            "selector": {"matchLabels": selector_labels(component)},
            "endpoints": [{"port": PORT_NAMES[service.ports[0]], "path": queue_metrics.PATH,
                           "interval": Value("metrics.serviceMonitor.interval"),
                           "scrapeTimeout": Value("metrics.serviceMonitor.scrapeTimeout")}],
        },
    }


def prometheus_adapter_values(values: dict[str, Any]) -> dict[str, Any]:
    """Values for the prometheus-adapter chart (prometheus-community): the external rule that
    serves the backend's queue depth under the HPA's metric name. The adapter adds the HPA's
    namespace to the query; every backend pod reports the same count, hence `max`."""
    return {"rules": {"external": [{
        "seriesQuery": f'{queue_metrics.QUEUE_DEPTH_METRIC}{{namespace!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
        "name": {"matches": f"^{queue_metrics.QUEUE_DEPTH_METRIC}$",
                 "as": lookup(values, "shepherd.autoscaling.externalMetric.name")},
        "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>}) by (namespace)",
    }]}}


def shepherd_keda() -> list[dict[str, Any]]:
    """KEDA's postgresql trigger on the queue query; KEDA's own HPA applies the same rule."""
    keda = "shepherd.autoscaling.keda"
    auth = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
        "metadata": metadata("shepherd-queue", "shepherd"),
        "spec": {"secretTargetRef": [{"parameter": "password", "name": SECRET_REF, "key": "DB_PASSWORD"}]},
    }
    scaled = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": metadata("shepherd", "shepherd"),
        "spec": {
            "scaleTargetRef": {"name": "shepherd"},
            "pollingInterval": Value(f"{keda}.pollingInterval"),
            "cooldownPeriod": Value(f"{keda}.cooldownPeriod"),
            "minReplicaCount": Value("shepherd.autoscaling.minReplicas"),
            "maxReplicaCount": Value("shepherd.autoscaling.maxReplicas"),
            "triggers": [{
                "type": "postgresql",
                "metadata": {
                    "query": QUEUE_DEPTH_QUERY,
                    "targetQueryValue": Value("shepherd.autoscaling.targetPerWorker", text=True),
                    "activationTargetQueryValue": "0",
                    "host": Value(f"{keda}.host"), "port": Value(f"{keda}.port", text=True),
                    "userName": Value(f"{keda}.userName"), "dbName": Value(f"{keda}.dbName"),
                    "sslmode": Value(f"{keda}.sslmode"),
                },
                "authenticationRef": {"name": "shepherd-queue"},
            }],
        },
    }
    return [auth, scaled]


def config_map() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(CONFIGMAP_NAME),
            "data": Value("config")}


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": labels()}}


def _enabled(values: dict[str, Any], path: str) -> bool:
    return bool(lookup(values, path))


def parts(all_services: dict[str, Service], values: dict[str, Any], kube: tuple[int, int]) -> list[Part]:
    """Every template file of the chart, in apply order."""
    svc = all_services
    scaling = _enabled(values, "shepherd.autoscaling.enabled")
    keda = _enabled(values, "shepherd.autoscaling.keda.enabled")
    queue_on, storage_on = _enabled(values, "queue.enabled"), _enabled(values, "storage.enabled")
    gpu_scheduling = {"nodeSelector": Value("shepherd.nodeSelector"), "tolerations": Value("shepherd.tolerations")}
    shepherd = deployment(svc["shepherd"], OnlyIf("not .Values.shepherd.autoscaling.enabled", not scaling,
                                                  Value("shepherd.replicas")), **gpu_scheduling)
    return [
        Part("namespace", [namespace()], helm_if=".Values.namespace.create"),
        Part("configmap", [config_map()]),
        Part("queue", [statefulset(svc["queue"]), k8s_service(svc["queue"]), data_network_policy(svc["queue"])],
             helm_if=".Values.queue.enabled", plain_if=queue_on),
        Part("storage", [statefulset(svc["storage"]), k8s_service(svc["storage"]),
                         data_network_policy(svc["storage"])],
             helm_if=".Values.storage.enabled", plain_if=storage_on),
        Part("backend", [deployment(svc["backend"], Value("backend.replicas")), k8s_service(svc["backend"]),
                         pdb("backend", {"minAvailable": Value("backend.pdb.minAvailable")}, kube)]),
        Part("frontend", [deployment(svc["frontend"], Value("frontend.replicas")), k8s_service(svc["frontend"]),
                          pdb("frontend", {"minAvailable": Value("frontend.pdb.minAvailable")}, kube)]),
        Part("shepherd", [shepherd, pdb("shepherd", {"maxUnavailable": Value("shepherd.pdb.maxUnavailable")}, kube)]),
        Part("shepherd-hpa", [shepherd_hpa(kube)],
             helm_if="and .Values.shepherd.autoscaling.enabled (not .Values.shepherd.autoscaling.keda.enabled)",
             plain_if=scaling and not keda),
        Part("shepherd-keda", shepherd_keda() + [keda_network_policy(svc["queue"])],
             helm_if="and .Values.shepherd.autoscaling.enabled .Values.shepherd.autoscaling.keda.enabled",
             plain_if=scaling and keda),
        Part("backend-servicemonitor", [service_monitor(svc[METRICS_COMPONENT])],
             helm_if="and .Values.metrics.enabled .Values.metrics.serviceMonitor.enabled",
             plain_if=_enabled(values, "metrics.enabled") and _enabled(values, "metrics.serviceMonitor.enabled")),
        Part("pruner", [pruner_cronjob(svc["pruner"], kube)]),
        Part("ingress", [ingress(svc, values)], helm_if=".Values.ingress.enabled",
             plain_if=_enabled(values, "ingress.enabled")),
    ]
