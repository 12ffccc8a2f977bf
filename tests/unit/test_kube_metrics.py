"""The shepherd HPA's external metric has a source: the backend exports the queue depth on /metrics
(services.common.queue_metrics; served from a real PostgreSQL queue in
services/backend/tests/test_gunicorn.py), Prometheus scrapes it through the backend pods'
annotations or a ServiceMonitor, and the prometheus-adapter rule written beside the chart serves it
under the name the HPA asks for. No Prometheus or adapter runs here: the tests check that the names,
labels, ports and paths of the four pieces fit together."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from isletops.kube.chart import ADAPTER_VALUES_FILE
from services.common import queue_metrics
from services.common.lease_queue import QueueStats
from tests.unit.test_kube_chart import by_kind, pod_spec, variant

# Labels Prometheus' Kubernetes scrapes add to every series (kubernetes-pods job, ServiceMonitor).
SCRAPE_LABELS = {"namespace", "pod", "instance", "job"}


def render_variant(directory: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    directory.mkdir(exist_ok=True)
    return variant(directory, values)


def adapter_rule(tmp_path: Path) -> dict[str, Any]:
    (rule,) = yaml.safe_load((tmp_path / "out" / ADAPTER_VALUES_FILE).read_text())["rules"]["external"]
    return rule


def hpa_metric(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (metric,) = by_kind(docs, "HorizontalPodAutoscaler")["shepherd"]["spec"]["metrics"]
    return metric["external"]


def exported(stats: QueueStats) -> dict[str, tuple[set[str], float]]:
    """What the backend's /metrics says for `stats`, read by Prometheus' own parser: series name ->
    (its label names, its value), for series with one sample."""
    samples = [sample for family in text_string_to_metric_families(queue_metrics.exposition(stats))
               for sample in family.samples]
    return {sample.name: (set(sample.labels), sample.value) for sample in samples if not sample.labels}


def test_the_adapter_serves_what_the_backend_exports_under_the_hpas_name(tmp_path: Path) -> None:
    docs = render_variant(tmp_path, {})
    rule, metric = adapter_rule(tmp_path), hpa_metric(docs)
    assert rule["name"]["as"] == metric["metric"]["name"]
    series = re.fullmatch(r'(?P<name>[a-z_]+)\{namespace!=""\}', rule["seriesQuery"])
    assert series and re.fullmatch(rule["name"]["matches"], series["name"])
    assert rule["resources"] == {"overrides": {"namespace": {"resource": "namespace"}}}

    stats = QueueStats(queued=5, running=2, oldest_queued_age_s=12.5, mean_service_time_s=None,
                       done_last_hour=9, failed_last_hour=0)
    labels, value = exported(stats)[series["name"]]
    assert value == 7  # queued + running, what KEDA's query and the Swarm autoscaler count too
    assert set(metric["metric"]["selector"]["matchLabels"]) <= labels | SCRAPE_LABELS
    assert metric["target"] == {"type": "AverageValue", "averageValue": "2"}


def test_renaming_the_metric_renames_it_in_the_hpa_and_the_adapter_rule(tmp_path: Path) -> None:
    name = "isletnet_lab_jobs_waiting"
    docs = render_variant(tmp_path, {"shepherd": {"autoscaling": {"externalMetric": {"name": name}}}})
    assert hpa_metric(docs)["metric"]["name"] == adapter_rule(tmp_path)["name"]["as"] == name


def test_backend_pods_are_scraped_where_the_backend_serves_metrics(tmp_path: Path) -> None:
    backend = by_kind(render_variant(tmp_path, {}), "Deployment")["backend"]
    annotations = backend["spec"]["template"]["metadata"]["annotations"]
    (container,) = pod_spec(backend)["containers"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) in [port["containerPort"] for port in container["ports"]]
    assert annotations["prometheus.io/path"] == queue_metrics.PATH
    assert "checksum/config" in annotations

    off = by_kind(render_variant(tmp_path / "off", {"metrics": {"enabled": False}}), "Deployment")["backend"]
    assert list(off["spec"]["template"]["metadata"]["annotations"]) == ["checksum/config"]
    other = by_kind(render_variant(tmp_path / "other", {}), "Deployment")["shepherd"]
    assert "prometheus.io/scrape" not in other["spec"]["template"]["metadata"]["annotations"]


def test_a_service_monitor_scrapes_the_backend_service_when_asked(tmp_path: Path) -> None:
    assert not by_kind(render_variant(tmp_path, {}), "ServiceMonitor")
    docs = render_variant(tmp_path / "on", {"metrics": {"serviceMonitor": {"enabled": True, "interval": "15s",
                                                                         "labels": {"release": "prom"}}}})
    monitor = by_kind(docs, "ServiceMonitor")["backend"]
    service = by_kind(docs, "Service")["backend"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]]
    assert (endpoint["path"], endpoint["interval"]) == (queue_metrics.PATH, "15s")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/component"] == "backend"
