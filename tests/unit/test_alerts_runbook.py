"""Every alert mail links to a runbook section that exists and shows the same steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitors import probes, runbook

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbook.md"


def sections(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            found[title] = ""
        elif title:
            found[title] += line + "\n"
    return found


@pytest.mark.parametrize("probe", probes.NAMES)
def test_each_probe_has_its_section_with_the_mail_steps(probe: str) -> None:
    text = RUNBOOK.read_text()
    section = runbook.SECTIONS[probe]
    body = sections(text)[section.title]
    for step in section.steps:
        assert step.split("#")[0].strip() in body, f"{probe}: step {step!r} missing in the runbook"
    assert runbook.link("docs/runbook.md", probe) == f"docs/runbook.md#alert-{probe}"


def test_runbook_has_each_alert_section_once() -> None:
    text = RUNBOOK.read_text()
    for section in runbook.SECTIONS.values():
        assert text.count(f"\n## {section.title}\n") == 1, section.title


@pytest.mark.parametrize(
    ("title", "anchor"), [("Alert: e2e", "alert-e2e"), ("First look", "first-look"), ("Disk full!", "disk-full")]
)
def test_github_anchor(title: str, anchor: str) -> None:
    assert runbook.github_anchor(title) == anchor
