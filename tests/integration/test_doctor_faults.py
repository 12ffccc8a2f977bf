"""`isletops doctor` against faults made for real: a small tmpfs data dir filled by uploads, a
pruner whose record went stale while training images grew large (a real container publishing
the record through its health check), a lease stuck in real PostgreSQL, jobs failing with the
same error, a corrupted site config, and a compose file edited by hand (drift)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isletops import stack
from isletops.cli import main
from isletops.config import parse_config
from monitors.doctor.disk import human as disk_human
from services.common.database import JobDatabase
from services.common.jobs import JobRecords
from services.common.lease_queue import LeaseQueue

pytestmark = pytest.mark.integration
SECOND_NS = 1_000_000_000


def site(tmp_path: Path, **instance_settings) -> tuple[Path, str]:
    """A site config with one instance `h5doc-<random>`; returns (config path, instance name)."""
    name = f"h5doc-{secrets.token_hex(3)}"
    config = {"instances_root": str(tmp_path / "instances"), "default_instance": name,
              "instances": {name: {"gpu": "no", **instance_settings}}}  # fmt: skip
    path = tmp_path / "isletops.yml"
    path.write_text(yaml.safe_dump(config))
    return path, name


def doctor(config: Path, *args: str, stdin: str | None = None):
    result = CliRunner().invoke(main, ["--config", str(config), "doctor", *args], input=stdin,
                                catch_exceptions=False)  # fmt: skip
    return result


def doctor_json(config: Path, *args: str) -> tuple[int, dict]:
    result = doctor(config, "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def titles(document: dict) -> list[str]:
    return [finding["title"] for finding in document["findings"]]


@pytest.fixture
def tmpfs(tmp_path: Path):
    mount = tmp_path / "data"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_data_dir_filled_by_uploads(tmp_path: Path, tmpfs: Path) -> None:
    config, _ = site(tmp_path, data_dir=str(tmpfs))
    uploads = tmpfs / "storage" / "jobs"
    uploads.mkdir(parents=True)
    for number in range(15):  # 15 x 512 KiB of "uploaded images"
        (uploads / f"image-{number}.tif").write_bytes(b"\0" * 512 * 1024)
    (tmpfs / "queue").mkdir()
    (tmpfs / "queue" / "base").write_bytes(b"\0" * 100 * 1024)

    code, document = doctor_json(config, "--area", "disk")
    (finding,) = [f for f in document["findings"] if f["title"].startswith("data dir is")]
    assert code == 2 and finding["severity"] == "CRITICAL"
    assert finding["title"].endswith("full (a burst of uploads)")
    assert any(line.startswith("storage/: 7.5 MiB") for line in finding["evidence"])
    assert any(line.startswith("queue/: 100.0 KiB") for line in finding["evidence"])
    assert finding["runbook"] == "docs/runbook.md#disk-full-free-space-now"
    assert "isletops -i " in finding["command"] and "restart pruner" in finding["command"]

    text = doctor(config, "--area", "disk").stdout
    assert text.startswith("isletops doctor: instance 'h5doc-") and "1. CRITICAL [disk] data dir is" in text


def test_docker_root_filled_by_a_container_log_and_rotated_with_fix(tmp_path: Path, tmpfs: Path) -> None:
    """Docker's data root on a small tmpfs; one container of the instance has a 7.6 MiB json log."""
    config, name = site(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["monitoring"] = {"probes": {"disk": {"docker_root": str(tmpfs), "log_warning_mb": 1}}}
    config.write_text(yaml.safe_dump(raw))
    folder = tmpfs / "containers" / ("ab" * 32)
    folder.mkdir(parents=True)
    log = folder / f"{'ab' * 32}-json.log"
    log.write_bytes(b'{"log":"GET /api/health 200\\n","stream":"stdout"}\n' * 160_000)  # 7.6 MiB of 8
    (folder / "config.v2.json").write_text(json.dumps({
        "Name": f"/{name}-backend-1", "LogPath": str(log),
        "Config": {"Labels": {"com.docker.compose.project": name}},
    }))  # fmt: skip

    code, document = doctor_json(config, "--area", "disk")
    by_title = {f["title"]: f for f in document["findings"]}
    full = next((f for title, f in by_title.items() if title.startswith("docker root is")), None)
    assert full, document
    assert full["title"].endswith("full (Docker logs)") and full["severity"] == "CRITICAL" and code == 2
    assert any(line.startswith("container logs of this instance: 7.") for line in full["evidence"])
    rotate = by_title[f"container log of {name}-backend-1 is {disk_human(log.stat().st_size)}"]
    assert rotate["fix"]["kind"] == "rotate_log" and "force-recreate" in rotate["command"]

    # Answer yes only to the log rotation (never prune this shared machine's dangling images).
    fixable = [f for f in document["findings"] if f["fix"]]
    answers = "".join("y\n" if f["fix"]["kind"] == "rotate_log" else "n\n" for f in fixable)
    done = doctor(config, "--area", "disk", "--fix", stdin=answers)
    assert f"done: rotate the log of {name}-backend-1: log of {name}-backend-1 rotated: 7." in done.output
    assert log.stat().st_size == 0
    kept = list((tmp_path / "instances" / name / "state" / "doctor").glob("*.log.gz"))
    assert len(kept) == 1
    audit = (tmp_path / "instances" / name / "state" / "audit.log").read_text().splitlines()
    assert len(audit) == 1 and "doctor --fix: rotate the log of" in audit[0]
    code, document = doctor_json(config, "--area", "disk")
    assert not any(f["title"].startswith("docker root is") for f in document["findings"])


@pytest.fixture
def containers(labelled_containers):
    return labelled_containers


def test_stale_pruner_record_and_large_training_images(tmp_path: Path, containers) -> None:
    config, name = site(tmp_path)
    three_days_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat().replace("+00:00", "Z")
    record = json.dumps({"last_success_at": three_days_ago, "last_error": "S3 request timed out",
                         "deleted_jobs": 0, "training_images": 9000, "training_bytes": 60 * 2**30})  # fmt: skip
    pruner = containers(name, "pruner", ["sleep", "infinity"],
                        healthcheck={"test": ["CMD", "echo", record], "interval": SECOND_NS, "retries": 1})  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pruner.reload()
        if (pruner.attrs["State"].get("Health") or {}).get("Log"):
            break
        time.sleep(0.5)

    code, document = doctor_json(config, "--area", "pruner", "--area", "disk")
    by_title = {f["title"]: f for f in document["findings"]}
    stale = by_title["the pruner's record is stale: it last succeeded 72.0 h ago"]
    assert stale["severity"] == "CRITICAL" and "last error: S3 request timed out" in stale["evidence"]
    assert stale["fix"]["kind"] == "restart" and stale["fix"]["target"] == "pruner"
    assert stale["runbook"].endswith("#alert-pruner-has-not-succeeded-for-n-hours--pruner-unhealthy")
    training = by_title["training images take 60.0 GiB"]
    assert training["severity"] == "WARNING" and "9000 training images" in training["evidence"][0]
    assert "training export" in training["command"]
    assert code == 2 and titles(document).index(stale["title"]) < titles(document).index(training["title"])


def test_stuck_lease_and_repeated_failures(tmp_path: Path, postgres_db: str) -> None:
    config, _ = site(tmp_path)
    database = JobDatabase(postgres_db)
    database.ensure_schema()
    records, queue = JobRecords(database), LeaseQueue(database)
    for _ in range(3):
        records.create_job(model="demo", pixel_size_um=1.0, file_names=["b.tif"])
        job = queue.claim("shepherd-2", lease_s=60)
        queue.fail(job.id, job.token, "ModelError: weights file islets-v3.pt is truncated")
    stuck_id = records.create_job(model="demo", pixel_size_um=1.0, file_names=["a.tif"])
    claimed = queue.claim("shepherd-dead-worker", lease_s=0.3)
    assert claimed is not None and claimed.id == stuck_id
    time.sleep(1.0)  # the dead worker's lease runs out

    code, document = doctor_json(config, "--area", "queue", "--database-url", postgres_db)
    by_title = {f["title"]: f for f in document["findings"]}
    leases = by_title["jobs hold expired leases: no worker takes them back"]
    assert leases["severity"] == "WARNING" and any(stuck_id in line for line in leases["evidence"])
    assert "worker shepherd-dead-worker" in " ".join(leases["evidence"]) and "restart shepherd" in leases["command"]
    repeated = by_title["3 jobs failed in 24 h with the same error"]
    assert repeated["evidence"][0] == "error: ModelError: weights file islets-v3.pt is truncated"
    assert code == 1
    assert records.get(stuck_id).state == "running"  # the doctor only read
    stats = queue.queue_stats()  # what /api/queue answers: a job without a live lease is not "running"
    assert (stats.running, stats.queued) == (0, 1)


def test_unreachable_database_is_a_finding(tmp_path: Path) -> None:
    config, _ = site(tmp_path)
    code, document = doctor_json(config, "--area", "queue", "--database-url", "postgresql://x:y@127.0.0.1:1/none")
    (finding,) = document["findings"]
    assert finding["title"].startswith("could not check queue: Cannot read the job database") and code == 1


def test_corrupted_site_config(tmp_path: Path) -> None:
    config = tmp_path / "isletops.yml"
    config.write_text("instances:\n  prod: {http_port: 8080\n")
    code, document = doctor_json(config)
    (finding,) = document["findings"]
    assert code == 2 and finding["area"] == "config" and "not valid YAML at line" in finding["evidence"][0]
    assert finding["runbook"] == "docs/runbook.md#the-site-config-is-broken"
    config.write_text("instances:\n  prod: {http_port: eighty}\n")
    code, document = doctor_json(config)
    assert code == 2 and "http_port must be a whole number" in document["findings"][0]["evidence"][0]


def test_compose_file_edited_by_hand_is_drift(tmp_path: Path) -> None:
    config, name = site(tmp_path)
    parsed = parse_config(yaml.safe_load(config.read_text()), config)
    stack.prepare_instance(parsed, name, "2026-12-01_01")
    code, document = doctor_json(config, "--area", "drift")
    assert code == 0 and document["findings"] == []

    compose = parsed.instance(name).directory / "docker-compose.production.yml"
    compose.write_text(compose.read_text().replace('max-size: "10m"', 'max-size: "10g"'))
    env = parsed.instance(name).env_file
    env.write_text(env.read_text().replace("MAX_UPLOAD_MB=200", "MAX_UPLOAD_MB=5"))
    code, document = doctor_json(config, "--area", "drift")
    by_title = {f["title"]: f for f in document["findings"]}
    edited = by_title["docker-compose.production.yml was changed by hand or is damaged"]
    assert 'diff: +      max-size: "10g"' in edited["evidence"] and 'diff: -      max-size: "10m"' in edited["evidence"]
    assert by_title["1 managed .env setting(s) differ"]["evidence"] == [
        "MAX_UPLOAD_MB: .env has '5', the site config says '200'"
    ]
    assert code == 1 and edited["command"].endswith("isletops -i " + name + " up                     # re-renders "
                                                    "and applies")  # fmt: skip
