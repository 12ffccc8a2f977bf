"""The measured quantities: one catalogue (`METRICS`), the `Measurement` a probe returns, and its two
renderings, Nagios perfdata and Prometheus metric families.

One metric per quantity, in base units (ratio 0–1, seconds, bytes, Unix timestamps, counters
ending in `_total`), so a Prometheus name never mixes units. Nagios shows the same quantity in the
plugin guidelines' units: a ratio as `%`, seconds as `s`, bytes as `B`, a counter as `c`; a
timestamp has no perfdata form, so a probe that reports one also reports the age (Nagios only).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric as PrometheusFamily

from isletops.errors import IsletOpsError

if TYPE_CHECKING:
    from monitors.result import ProbeResult

PREFIX = "isletops_"
INSTANCE_LABEL = "isletnet_instance"  # never `instance`/`job`: the scrape owns those

# unit -> (Prometheus name suffix, Nagios UOM, factor from the base unit to the Nagios value)
UNITS: dict[str, tuple[str, str, float]] = {
    "ratio": ("_ratio", "%", 100.0),
    "seconds": ("_seconds", "s", 1.0),
    "bytes": ("_bytes", "B", 1.0),
    "timestamp": ("_timestamp_seconds", "", 1.0),
    "total": ("_total", "c", 1.0),
    "celsius": ("_celsius", "", 1.0),
    "count": ("", "", 1.0),
}


@dataclass(frozen=True)
class Metric:
    """One quantity: `quantity` + the unit's suffix is its Prometheus name (after `isletops_`)."""

    quantity: str
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    prometheus: bool = True
    nagios: bool = True

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.quantity}{UNITS[self.unit][0]}"

    @property
    def in_perfdata(self) -> bool:
        """Nagios shows it: not a timestamp (perfdata has no unit for a moment in time)."""
        return self.nagios and self.unit != "timestamp"

    @property
    def family_name(self) -> str:
        """The name prometheus_client takes (a counter's family drops `_total`; it adds it back)."""
        return self.name.removesuffix("_total")


_CATALOGUE = (
    Metric("disk_used", "ratio", "Used share of a file system the instance writes to.", ("path",)),
    Metric("disk_free", "bytes", "Bytes still available on that file system.", ("path",)),
    Metric("disk_full_in", "seconds", "Forecast time until that file system is full at the recent rate.", ("path",)),
    Metric("training_images", "bytes", "Bytes of kept training images (from the pruner's record)."),
    Metric("e2e_duration", "seconds", "Time the end-to-end test job took from upload to result."),
    Metric("queue_jobs", "count", "Jobs in the queue by state, as /api/queue reported during the e2e probe.",
           ("state",)),
    Metric("queue_oldest_queued_age", "seconds", "How long the oldest queued job has waited."),
    Metric("http_response_duration", "seconds", "Time one HTTP check took.", ("path",)),
    Metric("services_ready", "count", "Services running and healthy."),
    Metric("services_expected", "count", "Services that must run.", nagios=False),
    Metric("service_restarts", "total", "Restarts Docker counted for a service's container.", ("service",)),
    Metric("swarm_nodes_not_ready", "count", "Swarm nodes that are not ready (down: heartbeats stopped)."),
    Metric("service_tasks_running", "count", "Healthy running tasks of a Swarm service.", ("service",)),
    Metric("pruner_last_success", "timestamp", "When the pruner last finished a pass without error."),
    Metric("pruner_last_success_age", "seconds", "Time since the pruner's last successful pass.", prometheus=False),
    Metric("tls_certificate_expiry", "timestamp", "When the public certificate expires."),
    Metric("tls_certificate_remaining", "seconds", "Time left until the public certificate expires.",
           prometheus=False),
    Metric("gpus", "count", "GPUs NVML sees."),
    Metric("gpu_temperature", "celsius", "GPU temperature.", ("gpu",)),
    Metric("gpu_memory_used", "ratio", "Used share of a GPU's memory.", ("gpu",)),
)  # fmt: skip
METRICS: dict[str, Metric] = {metric.quantity: metric for metric in _CATALOGUE}


@dataclass
class Measurement:
    """One value of a catalogued quantity, in its base unit, with Nagios thresholds (base unit too)."""

    quantity: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    warn: float | None = None
    crit: float | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        metric = METRICS.get(self.quantity)
        if metric is None:
            raise IsletOpsError(f"'{self.quantity}' is not a catalogued metric (monitors/metrics.py).")
        if set(self.labels) != set(metric.labels):
            raise IsletOpsError(f"Metric {self.quantity} takes the labels {metric.labels}, got {tuple(self.labels)}.")

    @property
    def metric(self) -> Metric:
        return METRICS[self.quantity]

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if value is not None and value != {}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**data)


# -- Nagios ---------------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    """A perfdata number: no exponent, no trailing zeros; '' for none."""
    if value is None:
        return ""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def perfdata_label(measurement: Measurement) -> str:
    """`quantity` plus the label values; quotes and `=` (the syntax's) are replaced."""
    words = [measurement.quantity, *measurement.labels.values()]
    return " ".join(words).replace("'", "_").replace("=", "_")


def perfdatum(measurement: Measurement) -> str:
    """`'label'=value[UOM];warn;crit;min;max` (plugin guidelines), trailing empty fields dropped."""
    _suffix, uom, factor = UNITS[measurement.metric.unit]
    minimum, maximum = measurement.minimum, measurement.maximum
    if measurement.metric.unit == "ratio":
        minimum, maximum = 0.0, 1.0
    scaled = [None if value is None else value * factor
              for value in (measurement.warn, measurement.crit, minimum, maximum)]  # fmt: skip
    fields = [f"{_number(measurement.value * factor)}{uom}", *(_number(value) for value in scaled)]
    return f"'{perfdata_label(measurement)}'=" + ";".join(fields).rstrip(";")


def perfdata(measurements: Iterable[Measurement]) -> str:
    """Space-separated perfdata of the measurements Nagios shows."""
    return " ".join(perfdatum(m) for m in measurements if m.metric.in_perfdata)


# -- Prometheus ----------------------------------------------------------------------------------

# Metrics of the probes themselves and of the monitor (not measurements): name -> help.
PROBE_METRICS = {
    "isletops_probe_state": "Probe state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    "isletops_probe_duration_seconds": "How long the probe's last run took.",
    "isletops_probe_last_run_timestamp_seconds": "When the probe last ran.",
    "isletops_alert_firing": "1 while the probe's alert fires.",
}
MONITOR_METRICS = {
    "isletops_incident_open": "1 while an incident is open.",
    "isletops_outbox_messages": "Alert mails waiting for SMTP.",
    "isletops_silences_active": "Silences now in force or planned.",
}


def metric_names() -> set[str]:
    """Every metric name the exposition may carry (counters with their `_total`)."""
    measured = {metric.name for metric in _CATALOGUE if metric.prometheus}
    return measured | set(PROBE_METRICS) | set(MONITOR_METRICS)


def probe_families(
    instance: str, results: Iterable[ProbeResult], firing: dict[str, bool]
) -> Iterator[PrometheusFamily]:
    """State, duration, last run and alert of each probe that has a result."""
    labels = [INSTANCE_LABEL, "probe"]
    state, duration, last_run, alert = (GaugeMetricFamily(name, text, labels=labels)
                                        for name, text in PROBE_METRICS.items())  # fmt: skip
    for result in results:
        key = [instance, result.name]
        state.add_metric(key, int(result.status))
        duration.add_metric(key, result.duration_s)
        last_run.add_metric(key, result.checked_at)
        alert.add_metric(key, int(firing.get(result.name, False)))
    yield from (state, duration, last_run, alert)


def monitor_families(instance: str, **values: float) -> Iterator[PrometheusFamily]:
    """The monitor's own gauges, `values` named as in MONITOR_METRICS without the prefix."""
    for name, text in MONITOR_METRICS.items():
        family = GaugeMetricFamily(name, text, labels=[INSTANCE_LABEL])
        family.add_metric([instance], float(values[name.removeprefix(PREFIX)]))
        yield family


def families(instance: str, measurements: Iterable[Measurement]) -> Iterator[PrometheusFamily]:
    """One family per catalogued Prometheus metric (empty ones too: the names are the interface)."""
    by_quantity: dict[str, list[Measurement]] = {}
    for measurement in measurements:
        by_quantity.setdefault(measurement.quantity, []).append(measurement)
    for metric in _CATALOGUE:
        if not metric.prometheus:
            continue
        kind = CounterMetricFamily if metric.unit == "total" else GaugeMetricFamily
        family = kind(metric.family_name, metric.help, labels=[INSTANCE_LABEL, *metric.labels])
        for measurement in by_quantity.get(metric.quantity, []):
            family.add_metric([instance, *(measurement.labels[label] for label in metric.labels)], measurement.value)
        yield family
