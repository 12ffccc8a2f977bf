"""The doctor's own logic: ranking, exit codes, text/JSON output, runbook anchors, log causes,
container judgement, GPU findings from a fake NVML, the pruner record, the disk cause."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from isletops.docker_engine import ContainerState
from monitors import doctor, runbook
from monitors.doctor import Finding, Fix, Severity, containers, disk, pruner, tls
from monitors.doctor import gpu as gpu_area
from tests.fakes.engine import FakeEngine
from tests.unit.test_probe_gpu import FakeGpu, FakeNvml

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


def ctx(tmp_path: Path, states: list[ContainerState] | None = None, **kwargs) -> doctor.DoctorContext:
    config = kwargs.pop("config", SiteConfig(source=None))
    context = doctor.DoctorContext(config, InstanceConfig("h5doc", tmp_path / "h5doc"), now=NOW, **kwargs)
    if states is not None:
        context.cache["containers"] = states
    return context


def state(service: str, state_: str = "running", health: str | None = "healthy", restarts: int = 0,
          started_ago_s: float = 86400, output: str = "", exit_code: int | None = None) -> ContainerState:  # fmt: skip
    started = dt.datetime.fromtimestamp(NOW - started_ago_s, dt.UTC)
    return ContainerState(service, f"h5doc-{service}-1", state_, health, restarts, started, "img", exit_code, output)


def test_rank_and_exit_code() -> None:
    findings = [
        Finding(Severity.INFO, "drift", "note"),
        Finding(Severity.WARNING, "disk", "logs"),
        Finding(Severity.CRITICAL, "queue", "leases"),
        Finding(Severity.CRITICAL, "containers", "shepherd exited"),
    ]
    ranked = doctor.rank(findings)
    assert [f.title for f in ranked] == ["shepherd exited", "leases", "logs", "note"]
    assert doctor.exit_code(ranked) == 2
    assert doctor.exit_code([Finding(Severity.WARNING, "disk", "x")]) == 1
    assert doctor.exit_code([Finding(Severity.INFO, "disk", "x")]) == 0
    assert doctor.exit_code([]) == 0


def test_text_and_json_output() -> None:
    finding = Finding(Severity.CRITICAL, "containers", "shepherd is exited", ["shepherd (exited, exit code 137)"],
                      "isletops -i prod restart shepherd\nisletops -i prod ps", "alert-containers",
                      Fix("restart", "shepherd", "restart shepherd"))  # fmt: skip
    text = doctor.format_text([finding], "prod")
    assert text.splitlines()[0] == "isletops doctor: instance 'prod': 1 critical, 0 warning(s)."
    assert "1. CRITICAL [containers] shepherd is exited" in text
    assert "   evidence: shepherd (exited, exit code 137)" in text
    assert "   fix:      isletops -i prod restart shepherd\n             isletops -i prod ps" in text
    assert "   runbook:  docs/runbook.md#alert-containers" in text
    assert "   --fix:    restart shepherd" in text
    document = json.loads(json.dumps(doctor.to_json([finding], "prod")))
    assert document["status"] == "CRITICAL" and document["exit_code"] == 2
    assert document["findings"][0]["severity"] == "CRITICAL"
    assert document["findings"][0]["runbook"] == "docs/runbook.md#alert-containers"
    assert doctor.format_text([], "prod") == "isletops doctor: instance 'prod' looks healthy."


def test_every_runbook_anchor_the_doctor_names_exists() -> None:
    headings = re.findall(r"^#{2,3} (.+)$", (REPO / "docs" / "runbook.md").read_text(), re.M)
    anchors = {runbook.github_anchor(title) for title in headings}
    sources = list((REPO / "monitors" / "doctor").glob("*.py")) + [REPO / "ops" / "isletops" / "cli" / "doctor.py"]
    used = set()
    for source in sources:  # every quoted slug in the doctor's code; "nvidia-smi" is a command
        used |= set(re.findall(r'"([a-z0-9]+(?:-{1,2}[a-z0-9]+)+)"', source.read_text())) - {"nvidia-smi"}
    used |= {f"alert-{name}" for name in tls.COMMANDS}  # built as f"alert-{name}"
    assert len(used) >= 20, "anchors not found: the pattern is stale"
    assert sorted(used - anchors) == []


@pytest.mark.parametrize(
    ("logs", "cause"),
    [
        ("INFO start\nRuntimeError: CUDA error: an illegal memory access\n", "the shepherd lost the GPU"),
        ("Traceback (most recent call last):\n  File postprocess.py\nValueError: empty mask\n",
         "an exception in postprocessing"),
        ("psycopg.OperationalError: connection to server at queue failed: Connection refused\n",
         "network trouble reaching storage or the queue"),
        ("INFO all good\n", ""),
    ],
)  # fmt: skip
def test_log_causes(logs: str, cause: str) -> None:
    found, _, lines = containers.cause_of(logs)
    assert found == cause
    assert bool(lines) == bool(cause)


def test_exited_shepherd_gets_a_restart_and_its_log_lines(tmp_path: Path) -> None:
    context = ctx(tmp_path)
    logs = "INFO job 1\nERROR worker died: RuntimeError: CUDA error: device-side assert\n"
    finding = containers.judge(context, state("shepherd", "exited", None, exit_code=1), logs, "")
    assert finding.severity is Severity.CRITICAL and finding.title == "shepherd is exited: the shepherd lost the GPU"
    assert "log: ERROR worker died: RuntimeError: CUDA error: device-side assert" in finding.evidence
    assert finding.command.startswith("isletops -i h5doc restart shepherd")
    assert finding.fix == Fix("restart", "shepherd", "restart shepherd (isletops restart shepherd)")
    assert finding.runbook == "gpu-fell-off-the-bus-xid-79"


def test_crash_loop_is_not_offered_a_restart(tmp_path: Path) -> None:
    context = ctx(tmp_path)
    looping = state("backend", "restarting", None, restarts=7, exit_code=3)
    finding = containers.judge(context, looping, "Traceback\nKeyError: 'S3_BUCKET'\n", "")
    assert finding.title == "backend is crash-looping" and finding.fix is None
    assert "isletops -i h5doc rollback" in finding.command and finding.runbook == "a-service-is-crash-looping"
    recently = state("backend", restarts=4, started_ago_s=30)
    assert containers.is_crash_looping(recently, NOW)
    assert not containers.is_crash_looping(state("backend", restarts=4, started_ago_s=86400), NOW)
    assert containers.judge(context, state("backend", restarts=4, started_ago_s=86400), "", "") is None


def test_no_restart_offered_while_a_deploy_holds_the_lock(tmp_path: Path) -> None:
    finding = containers.judge(ctx(tmp_path), state("queue", health="unhealthy"), "", "root@h (pid 1, deploy x)")
    assert finding.fix is None and "a deploy holds the lock: root@h (pid 1, deploy x)" in finding.evidence


def test_missing_services_are_one_finding(tmp_path: Path) -> None:
    missing = [state(name, "missing", None) for name in ("storage", "queue")]
    findings = containers.diagnose(ctx(tmp_path, [*missing, state("backend")]))
    assert [f.title for f in findings] == ["2 service(s) have no container"]
    assert "storage, queue" in findings[0].evidence[0]


def _record(**fields) -> str:
    return "healthy\n" + json.dumps(fields)


def test_pruner_record_stale_failing_and_fine(tmp_path: Path) -> None:
    old = dt.datetime.fromtimestamp(NOW - 50 * 3600, dt.UTC).isoformat()
    stale = state("pruner", health="unhealthy", output=_record(last_success_at=old, last_error="S3 timeout"))
    (finding,) = pruner.diagnose(ctx(tmp_path, [stale]))
    assert finding.severity is Severity.CRITICAL and "last succeeded 50.0 h ago" in finding.title
    assert "last error: S3 timeout" in finding.evidence and finding.fix.target == "pruner"
    recent = dt.datetime.fromtimestamp(NOW - 600, dt.UTC).isoformat()
    fine = state("pruner", output=_record(last_success_at=recent, deleted_jobs=3))
    assert pruner.diagnose(ctx(tmp_path, [fine])) == []
    never = state("pruner", output=_record(last_success_at=None, last_error="no bucket"))
    (finding,) = pruner.diagnose(ctx(tmp_path, [never]))
    assert finding.title == "the pruner's record is stale: it has never succeeded"


class LogEngine(FakeEngine):
    """The shared fake engine whose every service logged `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def logs(self, service: str, tail: int = 100, instance_name: str = "") -> str:
        return self.text


def gpu_context(tmp_path: Path, nvml: FakeNvml, logs: str = "") -> doctor.DoctorContext:
    monitoring = MonitoringConfig(gpu_expected=True, probes={"gpu": {"kmsg_path": "", "xid_wait_ms": 1}})
    return ctx(tmp_path, [state("shepherd")], config=SiteConfig(source=None, monitoring=monitoring), nvml=nvml,
               engine=LogEngine(logs))  # fmt: skip


def test_gpu_errors_in_the_runner_log(tmp_path: Path) -> None:
    logs = "INFO job 3 done\nWARNING worker gpu0: CUDA error: unspecified launch failure; falling back to CPU\n"
    findings = gpu_area.diagnose(gpu_context(tmp_path, FakeNvml([FakeGpu("GPU-a")]), logs))
    assert [f.title for f in findings] == ["the shepherd's log reports GPU errors"]
    assert findings[0].evidence == ["log: WARNING worker gpu0: CUDA error: unspecified launch failure; falling back "
                                    "to CPU"]  # fmt: skip
    assert findings[0].fix.target == "shepherd"


def test_gpu_fallen_off_the_bus(tmp_path: Path) -> None:
    findings = gpu_area.diagnose(gpu_context(tmp_path, FakeNvml([FakeGpu("GPU-a", lost=True)])))
    assert findings[0].title == "a GPU has fallen off the bus (Xid 79)"
    assert findings[0].runbook == "gpu-fell-off-the-bus-xid-79" and "sudo reboot" in findings[0].command


def test_gpu_xid_79_event(tmp_path: Path) -> None:
    findings = gpu_area.diagnose(gpu_context(tmp_path, FakeNvml([FakeGpu("GPU-a")], xids=[79])))
    assert [f.title for f in findings] == ["a GPU has fallen off the bus (Xid 79)"]


def test_gpu_ecc_errors(tmp_path: Path) -> None:
    findings = gpu_area.diagnose(gpu_context(tmp_path, FakeNvml([FakeGpu("GPU-a", ecc=4)])))
    assert [f.runbook for f in findings] == ["gpu-memory-errors-ecc"]
    assert findings[0].severity is Severity.CRITICAL and "4 uncorrected ECC errors" in findings[0].evidence[0]


def test_gpu_not_visible(tmp_path: Path) -> None:
    findings = gpu_area.diagnose(gpu_context(tmp_path, FakeNvml([], driver=False)))
    assert [f.runbook for f in findings] == ["gpu-not-visible"]
    findings = gpu_area.diagnose(gpu_context(tmp_path, FakeNvml([])))
    assert [f.runbook for f in findings] == ["gpu-not-visible"]


def test_healthy_gpu_has_no_finding(tmp_path: Path) -> None:
    assert gpu_area.diagnose(gpu_context(tmp_path, FakeNvml([FakeGpu("GPU-a")]))) == []


@pytest.mark.parametrize(
    ("parts", "uploads", "training", "facts", "cause"),
    [
        ([("storage", 900)], [("d3", 40, 400), ("d2", 5, 50), ("d1", 4, 40)], {}, {}, "a burst of uploads"),
        ([("storage", 900)], [], {"last_error": "S3 down"}, {}, "the pruner is failing"),
        ([("storage", 900)], [], {"training_bytes": 800}, {}, "too many training images"),
        ([("storage", 10)], [], {}, {"logs": [{"name": "x", "bytes": 5000}]}, "Docker logs"),
        ([("storage", 10)], [], {}, {"dangling": [("sha", 9000)]}, "dangling images"),
        ([], [], {}, {}, "unknown"),
    ],
)
def test_disk_cause(parts, uploads, training, facts, cause) -> None:
    assert disk._cause(parts, uploads, training, facts) == cause  # noqa: SLF001


def test_disk_breakdown_and_sizes(tmp_path: Path) -> None:
    (tmp_path / "storage" / "a").mkdir(parents=True)
    (tmp_path / "storage" / "a" / "f").write_bytes(b"x" * 3000)
    (tmp_path / "queue").mkdir()
    (tmp_path / "queue" / "g").write_bytes(b"x" * 10)
    assert disk.breakdown(tmp_path) == [("storage", 3000), ("queue", 10)]
    assert disk.human(3 * 2**30) == "3.0 GiB" and disk.human(512) == "512 B"
    assert disk.breakdown(tmp_path / "nope") == []


def test_an_area_that_crashes_is_a_finding_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    def broken(context):
        raise RuntimeError("boom")

    monkeypatch.setattr(pruner, "diagnose", broken)
    (finding,) = doctor.diagnose(ctx(tmp_path, []), ("pruner",))
    assert finding.severity is Severity.WARNING and finding.title == "could not check pruner: RuntimeError: boom"


def test_apply_fixes_asks_and_audits(tmp_path: Path, monkeypatch) -> None:
    from monitors.doctor import fixes

    done = []
    monkeypatch.setattr(fixes, "apply", lambda context, fix: done.append(fix.target) or "ok")
    context = ctx(tmp_path)
    findings = [Finding(Severity.CRITICAL, "containers", f"{name} down", fix=Fix("restart", name, f"restart {name}"))
                for name in ("shepherd", "queue")]  # fmt: skip
    applied = doctor.apply_fixes(context, findings, lambda finding: finding.fix.target == "shepherd")
    assert done == ["shepherd"] and [a.outcome for a in applied] == ["ok"]
    audit = (context.instance.state_dir / "audit.log").read_text().splitlines()
    assert len(audit) == 1 and audit[0].endswith("[h5doc] doctor --fix: restart shepherd: ok")


def test_fix_for_unknown_kind_is_refused(tmp_path: Path) -> None:
    from isletops.errors import IsletOpsError
    from monitors.doctor import fixes

    with pytest.raises(IsletOpsError, match="Unknown fix"):
        fixes.apply(ctx(tmp_path), replace(Fix("restart", "x", "y"), kind="format_disk"))


def test_rotate_log_keeps_the_tail_and_truncates(tmp_path: Path) -> None:
    import gzip

    from monitors.doctor import fixes

    root = tmp_path / "docker"
    folder = root / "containers" / "abc123"
    folder.mkdir(parents=True)
    log = folder / "abc123-json.log"
    log.write_bytes(b"old line\n" * 1000 + b"last line\n")
    (folder / "config.v2.json").write_text(json.dumps({"Name": "/h5doc-backend-1", "LogPath": str(log)}))
    monitoring = MonitoringConfig(probes={"disk": {"docker_root": str(root)}})
    context = ctx(tmp_path, config=SiteConfig(source=None, monitoring=monitoring))
    outcome = fixes.apply(context, Fix("rotate_log", "h5doc-backend-1", "rotate"))
    assert log.stat().st_size == 0
    assert outcome.startswith("log of h5doc-backend-1 rotated: 8.8 KiB freed, its last 8.8 KiB kept in ")
    (kept,) = (context.instance.state_dir / "doctor").glob("h5doc-backend-1-*.log.gz")
    assert gzip.decompress(kept.read_bytes()).endswith(b"last line\n")
    from isletops.errors import IsletOpsError

    with pytest.raises(IsletOpsError, match="No json log found for container nope"):
        fixes.apply(context, Fix("rotate_log", "nope", "rotate"))


def test_on_swarm_a_down_node_and_a_short_service_are_findings_with_swarm_s_reason(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """The per-task judgement is left out for a service short of tasks: one finding, Swarm's reason."""
    from isletops.engines.swarm import SwarmEngine
    from isletops.swarm_command import Node, ServiceReplicas

    instance = InstanceConfig("h5doc", tmp_path / "h5doc", engine="swarm")
    engine = SwarmEngine(SiteConfig(source=None), instance)
    down = Node("gpu-1", {"isletnet.gpu": "true"}, ready=False, available=True, generic={}, state="down",
                message="heartbeat failure")
    monkeypatch.setattr(engine, "nodes", lambda: [down, Node("m-1", {}, True, True, {}, role="manager")])
    reports = {"shepherd": ServiceReplicas("shepherd", 1, 0, "task pending: no suitable node (scheduling "
                                           "constraints not satisfied on 2 nodes)")}
    monkeypatch.setattr(engine, "replicas_report",
                        lambda services: [reports.get(s, ServiceReplicas(s, 1, 1)) for s in services])
    context = doctor.DoctorContext(SiteConfig(source=None), instance, engine=engine, now=NOW)
    context.cache["containers"] = [state("backend"), state("shepherd", "missing", None)]
    findings = containers.diagnose(context)
    assert [f.title for f in findings] == ["node gpu-1 (worker) is down: heartbeat failure",
                                           "shepherd runs 0 of 1 task(s)"]
    assert findings[0].runbook == "swarm-a-node-is-down" and "docker node ls" in findings[0].command
    assert findings[1].evidence == ["h5doc_shepherd: task pending: no suitable node (scheduling constraints not "
                                    "satisfied on 2 nodes)"]
    assert findings[1].command.splitlines()[0].startswith("docker service ps --no-trunc h5doc_shepherd")
    assert findings[1].runbook == "swarm-a-task-that-cannot-be-placed"


def test_on_swarm_the_queue_area_asks_for_a_database_url(tmp_path: Path) -> None:
    from monitors.doctor import queue

    instance = InstanceConfig("h5doc", tmp_path / "h5doc", engine="swarm")
    instance.directory.mkdir()
    instance.env_file.write_text("DB_PASSWORD=pw\n")
    (finding,) = doctor.diagnose(doctor.DoctorContext(SiteConfig(source=None), instance, now=NOW), ("queue",))
    assert finding.title == ("could not check queue: On engine swarm the job database is on the cluster's network, "
                             "out of this host's reach.")
    assert "--database-url" in finding.evidence[0]
    instance.env_file.write_text("DATABASE_URL=postgresql://isletnet:pw@db.hospital:5432/isletnet\n")
    assert queue.database_url(doctor.DoctorContext(SiteConfig(source=None), instance)) == \
        "postgresql://isletnet:pw@db.hospital:5432/isletnet"


def test_on_swarm_drift_compares_only_the_managed_env(tmp_path: Path) -> None:
    from monitors.doctor import drift

    instance = InstanceConfig("h5doc", tmp_path / "h5doc", engine="swarm")
    instance.directory.mkdir()
    context = doctor.DoctorContext(SiteConfig(source=None), instance, now=NOW)
    assert drift.diagnose(context) == []  # never deployed: nothing to compare, no "no compose files"
    from isletops import stack

    managed = stack.managed_env(instance, "2026-12-01_02", "")
    instance.env_file.write_text("".join(f"{k}={v}\n" for k, v in managed.items()))
    assert drift.diagnose(context) == []
    instance.env_file.write_text("".join(f"{k}={v}\n" for k, v in {**managed, "HTTP_PORT": "8099"}.items()))
    (finding,) = drift.diagnose(context)
    assert finding.title == "1 managed .env setting(s) differ" and "HTTP_PORT" in finding.evidence[0]
    assert finding.command == "isletops -i h5doc deploy --tag 2026-12-01_02"
