"""Doctor area `queue`: the job database read through a read-only SQL session — expired leases
(a worker died and nobody took its jobs back), stuck claims (a job running far too long), jobs
failing again and again with the same error, and uploads per day (for the disk area).

The database is the instance's queue container (its address on the compose network, the
password from the instance's env file) unless `--database-url` names another one. On another
engine the queue sits on the cluster's network, out of this host's reach: an external
database's `DATABASE_URL` from the env file, else `--database-url` (a tunnel to it), else a
sentence saying so. Every session is `default_transaction_read_only`: the doctor never writes
to the queue.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from isletops.config import read_env_file
from isletops.errors import IsletOpsError
from monitors.doctor import DoctorContext, Finding, Severity

STUCK_AFTER_S = 3600  # a job running (with a live lease) for longer than this is stuck
REPEATED_FAILURES = 3  # the same error this often in 24 h is a pattern, not bad luck
WAITING_WARNING_S = 1800


class QueueUnreachable(IsletOpsError):
    """The job database cannot be read."""


def database_url(context: DoctorContext) -> str:
    if context.database_url:
        return context.database_url
    env = read_env_file(context.instance.env_file)
    if context.instance.engine != "compose":
        if env.get("DATABASE_URL"):
            return env["DATABASE_URL"]
        raise QueueUnreachable(
            f"On engine {context.instance.engine} the job database is on the cluster's network, out of this host's "
            "reach.", "Pass --database-url postgresql://isletnet:PASSWORD@HOST:5432/isletnet (a tunnel to the queue "
            "task's node, e.g. ssh -L 5432:...), or set ISLETOPS_DOCTOR_DATABASE_URL.")  # fmt: skip
    password = env.get("DB_PASSWORD")
    if not password:
        raise QueueUnreachable(f"No DB_PASSWORD in {context.instance.env_file}.", "Run 'isletops up' once.")
    queue = next((s for s in context.containers() if s.service == "queue" and s.state == "running"), None)
    if queue is None:
        raise QueueUnreachable("The queue container is not running, so the job database cannot be read.")
    address = _container_address(context, queue.name)
    return f"postgresql://isletnet:{password}@{address}:5432/isletnet"


def _container_address(context: DoctorContext, name: str) -> str:
    attrs = context.docker().client.containers.get(name).attrs
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    address = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), "")
    if not address:
        raise QueueUnreachable(f"The queue container {name} has no network address.")
    return str(address)


def query(context: DoctorContext, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
    """Rows of one read-only query (values go in `params`, never into the text)."""
    try:
        with psycopg.connect(database_url(context), connect_timeout=5, row_factory=dict_row,
                             options="-c default_transaction_read_only=on -c statement_timeout=10000") as conn:
            return list(conn.execute(sql, params).fetchall())
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QueueUnreachable(f"Cannot read the job database: {first}.") from None  # fmt: skip


def uploads_per_day(context: DoctorContext) -> list[tuple[str, int, int]]:
    """(day, jobs, images) for the last 7 days, newest first (synthetic test jobs left out)."""
    if "uploads" not in context.cache:
        rows = query(context, """SELECT to_char(date_trunc('day', created_at), 'YYYY-MM-DD') AS day,
                                        count(*) AS jobs, coalesce(sum(image_count), 0) AS images
                                 FROM jobs WHERE created_at > now() - interval '7 days' AND NOT synthetic
                                 GROUP BY 1 ORDER BY 1 DESC""")  # fmt: skip
        context.cache["uploads"] = [(r["day"], int(r["jobs"]), int(r["images"])) for r in rows]
    return list(context.cache["uploads"])


def diagnose(context: DoctorContext) -> list[Finding]:
    findings: list[Finding] = []
    expired = query(context, """SELECT id, worker_id, attempts, max_attempts,
                                       extract(epoch FROM now() - lease_expires_at) AS overdue_s
                                FROM jobs WHERE state = 'running' AND lease_expires_at < now()
                                ORDER BY lease_expires_at""")  # fmt: skip
    if expired:
        oldest = float(expired[0]["overdue_s"])
        severity = Severity.CRITICAL if oldest > 600 else Severity.WARNING
        evidence = [f"{len(expired)} running job(s) whose lease expired; the oldest {oldest / 60:.0f} min ago"]
        evidence += [f"job {r['id']} (worker {r['worker_id']}, attempt {r['attempts']}/{r['max_attempts']}, "
                     f"lease expired {float(r['overdue_s']):.0f} s ago)" for r in expired[:5]]  # fmt: skip
        findings.append(Finding(severity, "queue", "jobs hold expired leases: no worker takes them back", evidence,
                                context.cmd("isletops ps                          # is the shepherd running?\n"
                                            "isletops restart shepherd            # a live worker re-claims them"),
                                "jobs-hold-expired-leases"))  # fmt: skip
    stuck = query(context, """SELECT id, worker_id, progress, extract(epoch FROM now() - started_at) AS running_s
                               FROM jobs WHERE state = 'running' AND lease_expires_at >= now()
                               AND started_at < now() - make_interval(secs => %s)
                               ORDER BY started_at""", (float(STUCK_AFTER_S),))  # fmt: skip
    if stuck:
        evidence = [f"job {r['id']} running for {float(r['running_s']) / 60:.0f} min on {r['worker_id']}, "
                    f"progress {float(r['progress']):.0%}" for r in stuck[:5]]  # fmt: skip
        findings.append(Finding(Severity.WARNING, "queue", f"{len(stuck)} job(s) stuck in a claim", evidence,
                                context.cmd("isletops logs shepherd --tail 200\nisletops restart shepherd"),
                                "jobs-hold-expired-leases"))  # fmt: skip
    repeated = query(context, """SELECT left(coalesce(error, '?'), 200) AS error, count(*) AS jobs, max(id) AS last
                                  FROM jobs WHERE state = 'failed' AND finished_at > now() - interval '1 day'
                                  GROUP BY 1 HAVING count(*) >= %s
                                  ORDER BY 2 DESC""", (REPEATED_FAILURES,))  # fmt: skip
    for row in repeated[:3]:
        findings.append(Finding(
            Severity.WARNING, "queue", f"{row['jobs']} jobs failed in 24 h with the same error",
            [f"error: {row['error']}", f"latest such job: {row['last']}"],
            context.cmd(f"isletops logs shepherd --tail 500 | grep -n '{row['last']}'"), "jobs-fail-again-and-again",
        ))  # fmt: skip
    waiting = query(context, """SELECT count(*) AS queued, extract(epoch FROM now() - min(created_at)) AS oldest_s
                                FROM jobs WHERE state = 'queued'""")  # fmt: skip
    if waiting and waiting[0]["queued"] and float(waiting[0]["oldest_s"] or 0) > WAITING_WARNING_S:
        row = waiting[0]
        findings.append(Finding(
            Severity.WARNING, "queue", f"{row['queued']} job(s) waiting, the oldest for "
            f"{float(row['oldest_s']) / 60:.0f} min", [f"{row['queued']} queued jobs"],
            context.cmd("isletops probe --only e2e,containers"), "alert-e2e-job-did-not-finish--jobs-stay-queued",
        ))  # fmt: skip
    return findings
