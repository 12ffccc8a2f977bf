"""The one home of a deploy: plan, rollout, hooks, interrupts, gate, run and status, over any
`isletops.engines.Engine`. The public names are re-exported here."""

from isletops.deploy.disk import check_disk_space, disk_needs
from isletops.deploy.gate import E2E_TIMEOUT_S, Gate
from isletops.deploy.hooks import HOOK_STAGES, HookContext, Hooks
from isletops.deploy.interrupts import InterruptController, Interrupted
from isletops.deploy.plan import DeployPlan, make_plan, rollback_target
from isletops.deploy.run import (
    DEFAULT_FAILED_CHECKS,
    DEFAULT_MIN_FREE_BYTES,
    DeployFailed,
    DeployOptions,
    DeployResult,
    build_plan,
    current_deployment,
    deploy,
    rollback,
)
from isletops.deploy.status import DeploymentStatus, deployment_status

__all__ = [
    "DEFAULT_FAILED_CHECKS", "DEFAULT_MIN_FREE_BYTES", "E2E_TIMEOUT_S", "HOOK_STAGES", "DeployFailed", "DeployOptions",
    "DeployPlan",
    "DeployResult", "DeploymentStatus", "Gate", "HookContext", "Hooks", "InterruptController", "Interrupted",
    "build_plan", "check_disk_space", "current_deployment", "deploy", "deployment_status", "disk_needs",
    "make_plan", "rollback", "rollback_target",
]
