"""Deploy hooks: a deploy or rollback silences every probe of its instance for its own duration.

`isletops.cli.deploy` calls `register(hooks.add)` on each deploy's `isletops.deploy.Hooks`. The pre-deploy hook
sets a silence on "all" (bounded by `DEPLOY_SILENCE_S`, so a killed deploy cannot silence the
monitor for long); the post-deploy hook ends it whatever the deploy's result. Failures keep
being counted meanwhile: a release that stays broken alerts as soon as the silence ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from monitors.silences import SilenceError, silence, unsilence

DEPLOY_SILENCE_S = 45 * 60
_active: dict[str, str] = {}  # instance directory -> silence id set by this process


def pre_deploy(context: Any) -> None:
    entry = silence(
        context.instance.state_dir,
        "all",
        DEPLOY_SILENCE_S,
        f"{context.command} {context.version} (from {context.previous_version or 'nothing'})",
        author=context.performer,
    )
    _active[str(context.instance.directory)] = entry.id


def post_deploy(context: Any) -> None:
    silence_id = _active.pop(str(context.instance.directory), None)
    if silence_id:
        with contextlib.suppress(SilenceError):  # already ended by hand: nothing to do
            unsilence(context.instance.state_dir, silence_id)


def register(register_hook: Callable[[str, Callable[[Any], None]], None]) -> None:
    register_hook("pre-deploy", pre_deploy)
    register_hook("post-deploy", post_deploy)
