"""The end-to-end gate: after every service is healthy, one synthetic job must go through the
REST API. The caller injects the gate (the CLI passes `monitors.probes.e2e.run_synthetic_job`, the
same code as the monitor's e2e probe), so this package never imports `monitors`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from isletops.errors import DeployError, IsletOpsError

E2E_TIMEOUT_S = float(os.environ.get("ISLETOPS_E2E_TIMEOUT_S", "180"))

# (base URL of the instance, timeout in seconds) -> the id of the job that finished; raises an
# `IsletOpsError` with the probe's sentence otherwise.
Gate = Callable[[str, float], object]


def run_gate(gate: Gate, base_url: str, timeout_s: float) -> str:
    """Run `gate` against `base_url`; any failure becomes one `IsletOpsError` sentence."""
    try:
        return str(gate(base_url, timeout_s))
    except IsletOpsError:
        raise
    except Exception as error:  # noqa: BLE001 - an injected gate's own error, as one sentence
        raise DeployError(f"The end-to-end gate failed: {type(error).__name__}: {error}.") from None
