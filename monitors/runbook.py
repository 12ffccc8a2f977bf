"""The on-call steps each alert mail carries, and the runbook section each alert links to.

docs/runbook.md has one section per alert titled
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
            "isletops ps                          # which service is exited, restarting or unhealthy",
            "isletops logs shepherd --tail 200    # why it stopped: GPU lost? exception in postprocessing?",
            "isletops restart shepherd            # stateless: running jobs are re-queued, users do not notice",
            "isletops up --force-recreate         # when a restart does not help",
        ),
    ),
    "http": Section(
        "Alert: http",
        (
            "isletops ps                          # are frontend and backend running and healthy?",
            "curl -sS -o /dev/null -w '%{http_code} %{time_total}s\\n' https://<public host>/api/health",
            "isletops logs backend --tail 200",
            "sudo systemctl status nginx          # the host's nginx in front of the stack",
            "isletops restart backend && isletops restart frontend",
        ),
    ),
    "e2e": Section(
        "Alert: e2e",
        (
            "isletops probe --only e2e,containers # slow because loaded, or broken?",
            'curl -sS -H "Authorization: Bearer $ISLETNET_PROBE_TOKEN" https://<public host>/api/queue'
            "   # queued/running jobs, oldest waiting job",
            "isletops logs shepherd --tail 200    # GPU lost, exception in postprocessing",
            "isletops restart shepherd            # jobs survive: they are re-queued, never lost",
        ),
    ),
    "disk": Section(
        "Alert: disk",
        (
            "isletops probe --only disk --json    # which filesystem, how full, when full, biggest logs",
            "isletops up --force-recreate && docker container prune -f --filter label=com.docker.compose.project",
            "isletops restart pruner && isletops logs pruner --tail 100   # a failing pruner leaves old images",
            "isletops training export --output <file>.zip   # too many training images: export them once",
        ),
    ),
    "gpu": Section(
        "Alert: gpu",
        (
            "nvidia-smi                           # is every GPU listed? temperature, ECC errors",
            "sudo dmesg -T | grep -i xid          # Xid 79 = fallen off the bus; 48/63/64/94/95 = memory errors",
            "isletops restart shepherd            # the shepherd lost the GPU: restart it",
            "sudo reboot                          # when nvidia-smi does not list the GPU any more",
        ),
    ),
    "tls": Section(
        "Alert: tls",
        (
            "sudo systemctl status certbot.timer   # renewals run twice a day (certbot-renew.timer on RHEL-like hosts)",
            "sudo certbot renew && sudo systemctl reload nginx",
            "isletops probe --only tls           # check the new expiry",
        ),
    ),
    "pruner": Section(
        "Alert: pruner",
        (
            "isletops logs pruner --tail 200     # why the last runs failed (storage? database?)",
            "isletops restart pruner             # old images pile up while it fails",
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
