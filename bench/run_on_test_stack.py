"""Runs `bench/deploy_under_load.py` on a throw-away instance made by the test fixtures.

It builds the images of this tree (`service_images`), starts a local registry and an instance, and
pushes three releases: FROM (the images as built), TO (the backend, shepherd, pruner and frontend
with one more label, so their ids differ; storage, queue and edge unchanged) and BROKEN (FROM with
a backend that runs `sleep infinity`: it never serves and ignores SIGTERM). Everything is removed
afterwards. Not part of `make test`; run it on purpose:

  BENCH_RATE=10 pytest -p no:cacheprovider -s bench/run_on_test_stack.py
"""

from __future__ import annotations

import os
from pathlib import Path

from bench import deploy_under_load
from isletops.docker_engine import DockerEngine
from tests.fixtures.releases import push_release

FROM, TO, BROKEN = "2026-12-04_01", "2026-12-04_02", "2026-12-04_03"
CHANGED_IN_TO = ("backend", "shepherd", "pruner", "frontend")


def push_releases(images: dict[str, str], registry: str, context_dir: Path) -> list[str]:
    variants = {FROM: {}, TO: {c: f"LABEL org.isletnet.test.release={TO}" for c in CHANGED_IN_TO},
                BROKEN: {"backend": 'ENTRYPOINT ["sleep", "infinity"]\nCMD []'}}
    pushed: list[str] = []
    for tag in (FROM, TO, BROKEN):
        pushed += push_release(images, registry, tag, context_dir, variants[tag])
    return pushed


def test_deploy_under_load(service_images, registry_url, stack_instance, tmp_path):
    pushed = push_releases(service_images, registry_url, tmp_path)
    made = stack_instance("bench")
    try:
        argv = ["--config", str(made.config_path), "--instance", made.instance.name, "--registry", registry_url,
                "--from", FROM, "--to", TO, "--broken", BROKEN, "--rate", os.environ.get("BENCH_RATE", "10")]
        if os.environ.get("BENCH_NO_BASELINE"):
            argv.append("--no-baseline")
        assert deploy_under_load.main(argv) == 0
    finally:
        engine = DockerEngine()
        for target in pushed:
            engine.remove_image(target, force=True)
