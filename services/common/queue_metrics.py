"""The queue's load (`LeaseQueue.queue_stats`) in Prometheus' text exposition format (0.0.4),
which the backend serves on `/metrics`. On Kubernetes, prometheus-adapter turns `QUEUE_DEPTH_METRIC`
into the external metric the shepherd's HorizontalPodAutoscaler scales on (isletops.kube).

Written out by hand rather than with prometheus_client: three gauges, and the backend image then
needs no extra wheel. The tests parse the output with prometheus_client's own parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.common.lease_queue import QueueStats

PATH = "/metrics"  # where the backend serves it
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Queued plus running jobs: what the autoscaling divides by the jobs one worker should carry
# (the Swarm autoscaler's rule, isletops.autoscale).
QUEUE_DEPTH_METRIC = "isletnet_queue_depth"
QUEUE_JOBS_METRIC = "isletnet_queue_jobs"
OLDEST_QUEUED_METRIC = "isletnet_queue_oldest_queued_age_seconds"


def _gauge(name: str, help_text: str, samples: list[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{labels} {value:g}" for labels, value in samples]
    return lines


def exposition(stats: QueueStats) -> str:
    """The gauges of one reading of the queue, as the text `/metrics` serves."""
    lines = _gauge(QUEUE_DEPTH_METRIC, "Jobs queued or running (the shepherd autoscaling's measure).",
                   [("", stats.queued + stats.running)])
    lines += _gauge(QUEUE_JOBS_METRIC, "Jobs in the queue by state.",
                    [('{state="queued"}', stats.queued), ('{state="running"}', stats.running)])
    lines += _gauge(OLDEST_QUEUED_METRIC, "How long the oldest queued job has waited.",
                    [("", stats.oldest_queued_age_s)])
    return "\n".join(lines) + "\n"
