"""Runs `bench/burst.py` through the public port of a throw-away instance made by the test
fixtures: the images of this tree, the edge, the frontend's nginx, the backend and the shepherd
in their containers with their default limits. Not part of `make test`; run it on purpose:

  BENCH_JOBS=30 pytest -p no:cacheprovider -s bench/run_burst_on_test_stack.py

With BENCH_SHOW_LOGS=1 it prints the shepherd's and storage's logs and each container's restart
count and OOM flag afterwards.
"""

from __future__ import annotations

import os

from bench import burst


def test_burst_through_the_public_port(stack_instance):
    made = stack_instance("burst")
    token = made.env["ISLETNET_PROBE_TOKEN"]
    try:
        jobs = os.environ.get("BENCH_JOBS", "30")
        assert burst.main(["--url", made.frontend_url, "--token", token, "--jobs", jobs]) == 0
    finally:
        if os.environ.get("BENCH_SHOW_LOGS"):
            print(made.compose("logs", "--no-color", "--timestamps", "shepherd", "storage").stdout)
            project = {"label": f"com.docker.compose.project={made.project}"}
            for container in made.engine.client.containers.list(all=True, filters=project):
                state = container.attrs["State"]
                print(container.name, "restarts", container.attrs["RestartCount"], "OOMKilled", state["OOMKilled"],
                      "started", state["StartedAt"], "status", state["Status"])
