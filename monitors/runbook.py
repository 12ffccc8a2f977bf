"""The on-call steps each alert mail carries, and the runbook section each alert links to.

docs/runbook.md (merged from docs/runbook.d/monitoring.md) has one section per alert titled
`Alert: <probe>`; `tests/unit/test_alerts_runbook.py` checks that every probe here has its
section there with the same heading, so a mail never links to a missing anchor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    title: str
    steps: tuple[str, ...]

    @property
    def anchor(self) -> str:
        return github_anchor(self.title)


def github_anchor(title: str) -> str:
    """The anchor GitHub/GitLab give a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return text.replace(" ", "-")


SECTIONS: dict[str, Section] = {
    "containers": Section(
        "Alert: containers",
        (
            "isletops ps                                   # which service is exited, restarting or unhealthy",
            "isletops logs --tail 200 <service>            # why it stopped (shepherd: GPU lost? exception?)",
            "isletops restart <service>                    # the shepherd is stateless: users do not notice",
            "isletops up --force-recreate                  # if a restart does not help",
        ),
    ),
    "http": Section(
        "Alert: http",
        (
            "isletops ps                                   # are frontend and backend running?",
            "curl -sS -o /dev/null -w '%{http_code} %{time_total}\\n' <public URL>/api/health",
            "isletops logs --tail 200 frontend backend",
            "sudo systemctl status nginx                   # the host's nginx in front of the stack",
            "isletops restart frontend backend",
        ),
    ),
    "e2e": Section(
        "Alert: e2e",
        (
            "isletops probe --only e2e,containers          # slow because loaded, or broken?",
            "curl -sS <public URL>/api/queue                # queued/running jobs, oldest waiting job",
            "isletops logs --tail 200 shepherd             # GPU lost, exception in postprocessing",
            "isletops restart shepherd                     # jobs survive: they are re-queued, never lost",
        ),
    ),
    "disk": Section(
        "Alert: disk",
        (
            "df -h <data dir> <docker data root>           # which disk, how full",
            "isletops up --force-recreate && docker container prune -f --filter label=com.docker.compose.project",
            "isletops restart pruner && isletops logs --tail 100 pruner   # pruner failing leaves old images",
            "isletops training export --output <dir>       # too many training images: export them once",
            "check /etc/docker/daemon.json log rotation     # huge container logs (isletops provision fixes it)",
        ),
    ),
    "gpu": Section(
        "Alert: gpu",
        (
            "nvidia-smi                                    # is every GPU visible? temperature, ECC errors",
            "sudo dmesg -T | grep -i xid                   # Xid 79 = fallen off the bus, 48/63/64 = memory errors",
            "isletops restart shepherd                     # the shepherd lost the GPU: restart it",
            "reboot the host if nvidia-smi does not list the GPU; call the hardware vendor for ECC/retired pages",
        ),
    ),
    "tls": Section(
        "Alert: tls",
        (
            "sudo systemctl status certbot-renew.timer     # renewals should run twice a day",
            "sudo certbot renew && sudo systemctl reload nginx",
            "openssl s_client -connect <host>:443 -servername <host> </dev/null | openssl x509 -noout -enddate",
        ),
    ),
    "pruner": Section(
        "Alert: pruner",
        (
            "isletops ps pruner && isletops logs --tail 200 pruner",
            "isletops restart pruner                       # old images pile up while it fails",
            "isletops probe --only pruner,disk",
        ),
    ),
}


def section(probe: str) -> Section:
    """The runbook section for `probe` (a generic one for a probe without its own section)."""
    return SECTIONS.get(
        probe,
        Section("First look", ("isletops status", "isletops probe", "isletops logs --tail 200 <service>")),
    )


def link(runbook_url: str, probe: str) -> str:
    """`<runbook_url>#<anchor>` for the probe's section."""
    return f"{runbook_url.split('#')[0]}#{section(probe).anchor}"
