"""Deploy hooks: Python callables the caller injects (e.g. the monitor's alert silence) and the
instance's executable script hooks (`<instance>/hooks/pre-deploy`, like `.kamal/hooks`).

Pre-deploy hooks run after the images are verified and before anything changes; raising
`IsletOpsError` aborts the deploy. Post-deploy hooks run after the history line, with the lock
still held, whatever the result; their failures are reported, never undo the deploy.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from isletops.config import InstanceConfig
from isletops.errors import DeployError

HOOK_STAGES = ("pre-deploy", "post-deploy")
SCRIPT_TIMEOUT_S = 300


@dataclass(frozen=True)
class HookContext:
    """What a hook learns about the deploy; `env()` is Kamal's hook environment."""

    stage: str
    command: str  # deploy | rollback
    instance: InstanceConfig
    version: str  # the tag being deployed
    previous_version: str
    performer: str
    recorded_at: str
    result: str = ""  # post-deploy only: ok | failed | rolled_back | interrupted

    def env(self) -> dict[str, str]:
        return {
            "ISLETOPS_RECORDED_AT": self.recorded_at,
            "ISLETOPS_PERFORMER": self.performer,
            "ISLETOPS_VERSION": self.version,
            "ISLETOPS_PREVIOUS_VERSION": self.previous_version,
            "ISLETOPS_COMMAND": self.command,
            "ISLETOPS_INSTANCE": self.instance.name,
            "ISLETOPS_STAGE": self.stage,
            "ISLETOPS_RESULT": self.result,
        }


Hook = Callable[[HookContext], None]


@dataclass
class Hooks:
    """The Python hooks of one deploy, per stage, in the order they were added."""

    by_stage: dict[str, list[Hook]] = field(default_factory=lambda: {stage: [] for stage in HOOK_STAGES})

    def add(self, stage: str, hook: Hook) -> None:
        """Add `hook` for `stage` (the `register(register_hook)` signature plug-ins use)."""
        if stage not in HOOK_STAGES:
            raise ValueError(f"unknown hook stage {stage!r}")
        if hook not in self.by_stage[stage]:
            self.by_stage[stage].append(hook)

    def run(self, context: HookContext) -> None:
        """The Python hooks, then the instance's script hook, for `context.stage`."""
        for hook in self.by_stage[context.stage]:
            hook(context)
        run_script_hook(context)


def script_hook(instance: InstanceConfig, stage: str) -> Path | None:
    """An executable `<instance>/hooks/<stage>`, if there is one."""
    path = instance.directory / "hooks" / stage
    return path if path.is_file() and os.access(path, os.X_OK) else None


def run_script_hook(context: HookContext) -> None:
    """Run the instance's script hook for the stage with the hook environment; its last output
    line is the error when it fails."""
    script = script_hook(context.instance, context.stage)
    if script is None:
        return
    result = subprocess.run(
        [str(script)], env={**os.environ, **context.env()}, capture_output=True, text=True,
        timeout=SCRIPT_TIMEOUT_S, check=False,
    )
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        raise DeployError(f"The {context.stage} hook {script} failed: {last[0]}.")
