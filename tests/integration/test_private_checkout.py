"""The tests pass from a checkout whose parent folders are mode 0700, as under a Debian 12 home
folder: a copy of this working tree, made under a fresh 0700 folder, runs the browser tests of
the frontend there. Their nginx workers run as an unprivileged user (www-data when the tests run
as root), who cannot enter that folder, so everything such a server reads must be copied into
the test's own temporary folder first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
# The cheap tests of the module (no analysis job): enough to prove that nginx serves the UI.
CHEAP_FRONTEND_TESTS = "bad_files_are_refused or security_headers"


def working_tree_files() -> list[str]:
    """The files a fresh clone would hold, as they are now: tracked and new, not ignored ones."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture
def private_checkout() -> Iterator[Path]:
    """A copy of the working tree at <0700 folder>/isletops."""
    home = Path(tempfile.mkdtemp(prefix="h18-home-"))
    home.chmod(0o700)
    checkout = home / "isletops"
    try:
        for name in working_tree_files():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
        yield checkout
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_frontend_browser_tests_pass_from_a_checkout_under_a_0700_folder(private_checkout: Path) -> None:
    assert private_checkout.parent.stat().st_mode & 0o777 == 0o700
    env = {**os.environ, "PYTHONPATH": f"{private_checkout / 'ops'}:{private_checkout}"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "tests/integration/test_frontend.py",
         "-k", CHEAP_FRONTEND_TESTS],
        cwd=private_checkout, env=env, capture_output=True, text=True, timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert " passed" in output and "skipped" not in output and "error" not in output, output[-4000:]
