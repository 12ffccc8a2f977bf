"""How many GPUs this shepherd may use, from NVML (`pynvml`, package nvidia-ml-py). No NVML, no
driver or no device all mean "run on CPU"; that is a normal configuration, not an error."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)


def visible_gpu_ids(env: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids the worker processes may be pinned to: CUDA_VISIBLE_DEVICES when the container
    was given a subset, else every device NVML reports. Empty when there is no usable GPU."""
    env = os.environ if env is None else env
    preset = env.get("CUDA_VISIBLE_DEVICES")
    if preset is not None and preset.strip() not in ("", "-1", "none", "NoDevFiles"):
        return [part.strip() for part in preset.split(",") if part.strip()]
    if preset is not None:
        return []
    try:
        import pynvml
    except ImportError:
        log.info("no GPU: running on CPU (NVML library pynvml is not installed)")
        return []
    try:
        pynvml.nvmlInit()
    except Exception as error:  # NVMLError subclasses vary by driver; all mean "no GPU here"
        log.info("no GPU: running on CPU (NVML: %s)", error)
        return []
    try:
        count = pynvml.nvmlDeviceGetCount()
    except Exception as error:
        log.warning("no GPU: running on CPU (NVML could not count devices: %s)", error)
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # shutting down a half-initialised NVML is best effort
            log.debug("nvmlShutdown failed", exc_info=True)
    if count == 0:
        log.info("no GPU: running on CPU (NVML reports no devices)")
    return [str(index) for index in range(count)]
