"""The built base image has Debian's security and stable updates: every installed package that
bookworm-security or bookworm-updates carries is at least that suite's version (Debian's own
version ordering, from python-debian). Needs Docker, the base image (`make bootstrap`) and the
network to the Debian mirror (deb.debian.org), which the build host and CI have."""

from __future__ import annotations

import datetime as dt
import email.utils
import lzma
import os
import subprocess

import pytest
import requests
from debian.deb822 import Packages
from debian.debian_support import Version

from isletops import images, stack
from isletops.docker_engine import DockerEngine
from isletops.errors import DockerError

MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
SUITES = ((SECURITY_MIRROR, "bookworm-security"), (MIRROR, "bookworm-updates"))


def _architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _suite(mirror: str, suite: str, arch: str) -> tuple[dt.datetime, dict[str, Version]]:
    """The suite's index date and the newest version of each binary package it carries."""
    try:
        release = requests.get(f"{mirror}/dists/{suite}/InRelease", timeout=60)
        index = requests.get(f"{mirror}/dists/{suite}/main/binary-{arch}/Packages.xz", timeout=120)
        release.raise_for_status()
        index.raise_for_status()
    except requests.RequestException as exc:
        pytest.skip(f"the Debian mirror {mirror} cannot be reached: {exc}")
    date = next(line.split(":", 1)[1].strip() for line in release.text.splitlines() if line.startswith("Date:"))
    candidates: dict[str, Version] = {}
    for paragraph in Packages.iter_paragraphs(lzma.decompress(index.content).decode(), use_apt_pkg=False):
        version = Version(paragraph["Version"])
        if paragraph["Package"] not in candidates or version > candidates[paragraph["Package"]]:
            candidates[paragraph["Package"]] = version
    return email.utils.parsedate_to_datetime(date).astimezone(dt.UTC), candidates


@pytest.fixture(scope="module")
def base() -> tuple[str, dict[str, str], dict[str, Version]]:
    """The base image's labels and installed packages (name -> version, this architecture's)."""
    try:
        engine = DockerEngine()
        labels = engine.image_labels(stack.BASE_IMAGE)
    except DockerError as error:
        pytest.skip(f"Docker and the base image are needed: {error}")
    listing = engine.client.containers.run(
        stack.BASE_IMAGE, ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version}\\n"],
        remove=True, labels={"org.isletnet.test": "1"}).decode()
    installed = {}
    for line in listing.splitlines():
        status, name, version = line.split(" ", 2)
        if status == "installed":
            installed[name.split(":")[0]] = Version(version)
    return stack.BASE_IMAGE, labels, installed


def test_every_installed_package_is_at_least_the_security_and_updates_candidate(base) -> None:
    image, labels, installed = base
    built_at = images.base_time(labels)
    assert built_at is not None, f"{image} has no {images.BASE_INDEX_LABEL} label: build it with make bootstrap"
    arch = _architecture()
    behind, compared, newest_index = [], set(), built_at
    for mirror, suite in SUITES:
        index_date, candidates = _suite(mirror, suite, arch)
        newest_index = max(newest_index, index_date)
        compared |= set(installed) & set(candidates)
        behind += [f"{name} {installed[name]} < {candidates[name]} ({suite})"
                   for name in sorted(installed) if name in candidates and installed[name] < candidates[name]]
    # openssl, libc6, zlib1g, python3.11, nginx... have security updates: nothing compared is a bug.
    assert {"openssl", "libssl3"} & compared, f"nothing compared: {sorted(compared)}"
    if not behind:
        return
    stale = newest_index > built_at + dt.timedelta(minutes=1)
    hint = (f"The Debian index moved on since the base was built ({built_at:%Y-%m-%d %H:%M} -> "
            f"{newest_index:%Y-%m-%d %H:%M} UTC): the base needs a rebuild (make bootstrap)."
            if stale else "The base saw this index, so its build did not apply the upgrades: a bug in "
            "scripts/build-base-image.sh.")
    pytest.fail(f"{len(behind)} package(s) of {image} are behind: {'; '.join(behind)}. {hint}")
