"""Every component's Dockerfile follows the image rules (docs/architecture.md, "Components"):
a public `BASE_IMAGE` can replace the local base, the process runs non-root under tini with a
healthcheck, and the nginx images stop gracefully (SIGQUIT lets in-flight requests finish, which a
side-by-side deploy relies on). Read from the files: no Docker needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from isletops import stack
from isletops.release import COMPONENTS
from isletops.render import PROJECT_ROOT

NGINX_IMAGES = ("frontend", "edge")
# The uids the host data folders are given to (stack.DATA_DIR_OWNERS): every other image runs as 10001.
EXPECTED_UIDS = stack.DATA_DIR_OWNERS


def dockerfile(component: str) -> str:
    return (PROJECT_ROOT / "services" / component / "Dockerfile").read_text()


@pytest.mark.parametrize("component", COMPONENTS)
def test_base_image_non_root_tini_and_healthcheck(component: str) -> None:
    text = dockerfile(component)
    assert re.search(r"^ARG BASE_IMAGE=isletnet-base:latest$", text, re.M), component
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M), component  # the final stage
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--"', text, re.M), component
    assert re.search(r"^HEALTHCHECK ", text, re.M), component


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_final_user_is_a_numeric_non_root_uid_and_gid(component: str) -> None:
    """Kubernetes' runAsNonRoot can check only a numeric USER (a name would need /etc/passwd)."""
    users = re.findall(r"^USER (\S+)$", dockerfile(component), re.M)
    assert users, component
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) > 0 and int(gid) > 0, (component, users[-1])
    assert int(uid) == EXPECTED_UIDS.get(component, 10001), component


@pytest.mark.parametrize("component", NGINX_IMAGES)
def test_nginx_images_stop_gracefully_and_have_a_narrow_build_context(component: str) -> None:
    assert re.search(r"^STOPSIGNAL SIGQUIT$", dockerfile(component), re.M)
    ignore = Path(PROJECT_ROOT / "services" / component / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything not named after it is left out of the build context


def test_the_edge_image_has_no_per_build_input() -> None:
    """Its id must stay the same from release to release (deploys then keep it running)."""
    text = dockerfile("edge")
    assert "ARG " not in text.replace("ARG BASE_IMAGE=isletnet-base:latest", "")
    assert re.findall(r"^COPY (\S+)", text, re.M) == ["docker/nginx-start.sh", "services/edge/nginx.conf"]
