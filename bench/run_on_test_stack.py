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

from bench import deploy_under_load
from isletops.docker_engine import DockerEngine
from isletops.release import COMPONENTS, image_name

FROM, TO, BROKEN = "2026-12-04_01", "2026-12-04_02", "2026-12-04_03"
CHANGED_IN_TO = ("backend", "shepherd", "pruner", "frontend")


def push_releases(images: dict[str, str], registry: str, context_dir) -> list[str]:
    engine = DockerEngine()
    pushed = []

    def variant(base: str, target: str, extra: str) -> None:
        (context_dir / "Dockerfile").write_text(f"FROM {base}\n{extra}\n")
        engine.build_image(context_dir, context_dir / "Dockerfile", target, labels={"org.isletnet.test": "1"})

    for tag in (FROM, TO, BROKEN):
        for component in COMPONENTS:
            target = image_name(component, tag, registry)
            if tag == BROKEN and component == "backend":
                variant(images["backend"], target, 'ENTRYPOINT ["sleep", "infinity"]\nCMD []')
            elif tag == TO and component in CHANGED_IN_TO:
                variant(images[component], target, f"LABEL org.isletnet.test.release={TO}")
            else:
                engine.tag_image(images[component], target)
            engine.push_image(target)
            pushed.append(target)
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
