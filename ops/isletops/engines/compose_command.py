"""Compose command lines, built and never run (Kamal's command objects): the one place that knows
compose's argument grammar. Every method returns an argument list; `DockerEngine.run_compose`
runs them. Pure: no I/O, so every line is unit-tested as data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# `up --wait` exists since Compose 2.1.1, `--wait-timeout` since 2.17.0.
WAIT_SINCE = (2, 1, 1)
WAIT_TIMEOUT_SINCE = (2, 17, 0)


@dataclass(frozen=True)
class ComposeCommand:
    """The compose CLI (`binary`, its `version`) for one project and its files."""

    binary: tuple[str, ...]
    project: str
    files: tuple[Path, ...]
    version: tuple[int, int, int] = (2, 17, 0)

    @property
    def supports_wait(self) -> bool:
        return self.version >= WAIT_SINCE

    def base(self) -> list[str]:
        """`compose --project-name P --file F...`."""
        command = [*self.binary, "--project-name", self.project]
        for file in self.files:
            command += ["--file", str(file)]
        return command

    def args(self, *args: str) -> list[str]:
        """Any subcommand: `base() + args`."""
        return [*self.base(), *args]

    def up(
        self, services: Sequence[str] = (), force_recreate: bool = False, wait_timeout_s: float | None = None
    ) -> list[str]:
        """Start (or update) the project detached, removing orphans; `--wait` where supported."""
        args = ["up", "--detach", "--remove-orphans"]
        if force_recreate:
            args.append("--force-recreate")
        if wait_timeout_s is not None and self.supports_wait:
            args.append("--wait")
            if self.version >= WAIT_TIMEOUT_SINCE:
                args += ["--wait-timeout", str(int(wait_timeout_s))]
        return self.args(*args, *services)

    def replace(self, services: Sequence[str], drain_s: int) -> list[str]:
        """Recreate `services` in place (only those whose config or image changed), each old
        container getting `drain_s` seconds to stop; dependencies are left alone."""
        return self.args("up", "-d", "--no-deps", "--timeout", str(drain_s), *services)

    def start_beside(self, service: str, running: int) -> list[str]:
        """One more container of `service` beside its `running` ones, none of them recreated."""
        return self.args("up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={running + 1}", service)

    def down(self, remove_volumes: bool = False) -> list[str]:
        return self.args("down", "--remove-orphans", *(["--volumes"] if remove_volumes else []))

    def restart(self, services: Sequence[str] = ()) -> list[str]:
        return self.args("restart", *services)

    def logs(self, services: Sequence[str] = (), tail: int = 100, follow: bool = False) -> list[str]:
        return self.args("logs", "--no-color", "--tail", str(tail), *(["--follow"] if follow else []), *services)
