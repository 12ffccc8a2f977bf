"""The plan of a deploy or rollback: one object, printed by `--dry-run` and executed by a real run.

Pure: `make_plan` only assembles what the caller read (the engine's service plans, the images,
what the registry lacks); nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from isletops.engines.base import ServicePlan
from isletops.errors import DeployError
from isletops.history import Deployed
from isletops.release import ReleaseTag, release_images


@dataclass(frozen=True)
class DeployPlan:
    """What a deploy or rollback will do, step by step."""

    command: str  # deploy | rollback
    instance: str
    engine: str
    from_tag: str
    to_tag: str
    registry: str
    images: dict[str, str]  # service -> image reference of `to_tag`
    services: ServicePlan  # how `to_tag` is rolled over
    restore: ServicePlan | None  # how `from_tag` comes back on a failure (None: nothing to go back to)
    restore_images: dict[str, str]
    drain_s: int
    missing: tuple[str, ...] = ()
    e2e_gate: bool = True

    def lines(self) -> list[str]:
        moved = f"{self.from_tag or 'nothing deployed'} -> {self.to_tag}"
        out = [f"{self.command} on instance '{self.instance}' ({self.engine}): {moved}"]
        if self.from_tag == self.to_tag:
            out.append(f"  {self.to_tag} is already deployed; services already on its images are left running")
        out.append(f"  1. lock the instance; verify {len(self.images)} images in {self.registry}:")
        out += [f"       {ref}" + ("   MISSING" if ref in self.missing else "") for ref in self.images.values()]
        out.append("  2. check free disk space for the pull; run pre-deploy hooks; pull the images")
        out.append(f"  3. prepare {self.to_tag} and roll over in dependency order (a service already on its image"
                   " is left running):")
        for number, level in enumerate(self.services.levels, start=1):
            out += [f"       level {number}: {self.services.step(s).describe(self.drain_s)}" for s in level]
        if self.e2e_gate:
            out.append("  4. end-to-end gate: one synthetic job through the REST API must finish")
        if self.restore is not None:
            out.append(f"  on failure or interrupt: roll back to {self.from_tag} by itself, only the services "
                       "whose image differs")
        else:
            out.append("  on failure: nothing to roll back to; stop")
        out.append("  5. record the history line, run post-deploy hooks, release the lock")
        return out


def make_plan(
    command: str,
    instance: str,
    engine: str,
    from_tag: str,
    to_tag: str,
    registry: str,
    services: ServicePlan,
    restore: ServicePlan | None,
    drain_s: int,
    missing: tuple[str, ...] = (),
    e2e_gate: bool = True,
) -> DeployPlan:
    """The plan for moving an instance from `from_tag` to `to_tag` (pure)."""
    tag = str(ReleaseTag.parse(to_tag))
    has_restore = bool(from_tag) and from_tag != tag and restore is not None
    return DeployPlan(
        command=command,
        instance=instance,
        engine=engine,
        from_tag=from_tag,
        to_tag=tag,
        registry=registry,
        images=release_images(tag, registry),
        services=services,
        restore=restore if has_restore else None,
        restore_images=release_images(from_tag, registry) if has_restore else {},
        drain_s=drain_s,
        missing=tuple(missing),
        e2e_gate=e2e_gate,
    )


def rollback_target(deployed: Deployed, requested: str | None) -> str:
    """Where `rollback` goes: the requested tag, or the previous good one from the history."""
    if requested:
        return str(ReleaseTag.parse(requested))
    if not deployed.previous:
        current = f" (deployed: {deployed.current})" if deployed.current else ""
        raise DeployError(
            f"There is no earlier successful release to roll back to{current}.",
            "Name one with 'isletops rollback --to TAG'; 'isletops releases' lists them.",
        )
    return deployed.previous
