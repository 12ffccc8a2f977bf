"""Probe `gpu`: every expected NVIDIA GPU is visible and sound, read through NVML (pynvml).

Checks: device count against the expected count and against the GPUs seen at the last run (a
GPU that "fell off the bus" disappears), temperature, memory, uncorrected ECC errors, retired
pages and remapped rows pending or failed, and Xid events (NVML events during a short wait, plus
new `NVRM: Xid` lines in the kernel log since the last run). Without a driver the result is
UNKNOWN, or CRITICAL when the config says this host has a GPU.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Any

from monitors.metrics import Measurement
from monitors.result import ProbeContext, ProbeResult, Status, worst
from monitors.state import read_json, write_json_atomic

NAME = "gpu"
INTERVAL_S = 60
DEFAULTS: dict[str, Any] = {
    "count": 0,  # GPUs that must be visible; 0: at least 1 when a GPU is expected, and all seen before
    "temperature_warning_c": 85,
    "temperature_critical_c": 95,
    "memory_warning_percent": 99.0,
    "xid_wait_ms": 200,  # how long to listen for NVML Xid events
    "kmsg_path": "/dev/kmsg",  # kernel log to scan for Xid lines ("" to skip)
}
# Xids that mean the GPU or its memory is failing (NVIDIA's Xid catalogue); others are warnings.
CRITICAL_XIDS = {48, 63, 64, 74, 79, 92, 94, 95, 119, 120}
_KMSG_XID = re.compile(r"NVRM: Xid \(([^)]*)\): (\d+)")


def expected(context: ProbeContext) -> bool:
    return context.config.monitoring.gpu_expected or context.instance.gpu == "yes"


def enabled(context: ProbeContext) -> bool:
    """Checked by default where a GPU is expected or an NVIDIA driver is present."""
    return expected(context) or (context.instance.gpu != "no" and Path("/dev/nvidiactl").exists())


def kernel_xids(path: str, after_seq: int) -> tuple[list[dict[str, Any]], int]:
    """New `NVRM: Xid` records of the kernel log (`/dev/kmsg` format) after sequence `after_seq`."""
    if not path:
        return [], after_seq
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return [], after_seq
    chunks: list[bytes] = []
    try:
        while True:
            try:
                chunk = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EPIPE):  # end of buffer / record overwritten
                    if exc.errno == errno.EPIPE:
                        continue
                    break
                raise
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    found, last = [], after_seq
    for line in b"".join(chunks).decode("utf-8", errors="replace").splitlines():
        header, _, message = line.partition(";")
        fields = header.split(",")
        if len(fields) < 2 or not fields[1].isdigit():
            continue
        seq = int(fields[1])
        last = max(last, seq)
        match = _KMSG_XID.search(message)
        if seq > after_seq and match:
            found.append({"xid": int(match.group(2)), "device": match.group(1), "message": message.strip()[:200]})
    return found, last


class _Device:
    """Reads one GPU, turning NVML errors into findings."""

    def __init__(self, nvml: Any, index: int) -> None:
        self.nvml, self.index = nvml, index
        self.findings: list[tuple[Status, str]] = []
        self.info: dict[str, Any] = {"index": index}
        self.lost = False

    def call(self, function: str, *args: Any) -> Any:
        """An NVML call; None when unsupported, marks the GPU lost on NVMLError_GpuIsLost."""
        if self.lost:
            return None
        try:
            return getattr(self.nvml, function)(*args)
        except self.nvml.NVMLError_GpuIsLost:
            self.lost = True
            self.findings.append((Status.CRITICAL, f"GPU {self.index} has fallen off the bus (GPU is lost)"))
        except self.nvml.NVMLError:
            return None
        return None

    def check(self, options: dict[str, Any]) -> None:
        nvml = self.nvml
        handle = self.call("nvmlDeviceGetHandleByIndex", self.index)
        if handle is None:
            if not self.lost:
                self.findings.append((Status.CRITICAL, f"GPU {self.index} cannot be opened"))
            return
        self.handle = handle
        name = self.call("nvmlDeviceGetName", handle)
        uuid = self.call("nvmlDeviceGetUUID", handle)
        self.info.update(name=_text(name), uuid=_text(uuid))
        label = f"GPU {self.index}"
        temperature = self.call("nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU)
        if temperature is not None:
            self.info["temperature_c"] = temperature
            if temperature >= options["temperature_critical_c"]:
                self.findings.append((Status.CRITICAL, f"{label} at {temperature} °C"))
            elif temperature >= options["temperature_warning_c"]:
                self.findings.append((Status.WARNING, f"{label} at {temperature} °C"))
        memory = self.call("nvmlDeviceGetMemoryInfo", handle)
        if memory is not None and memory.total:
            percent = 100.0 * memory.used / memory.total
            self.info.update(memory_used=memory.used, memory_total=memory.total, memory_percent=round(percent, 1))
            if percent >= float(options["memory_warning_percent"]):
                self.findings.append((Status.WARNING, f"{label} memory {percent:.0f}% used"))
        utilisation = self.call("nvmlDeviceGetUtilizationRates", handle)
        if utilisation is not None:
            self.info["utilisation_percent"] = utilisation.gpu
        ecc = self.call(
            "nvmlDeviceGetTotalEccErrors", handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
        )
        if ecc:
            self.info["ecc_uncorrected"] = ecc
            self.findings.append((Status.CRITICAL, f"{label} has {ecc} uncorrected ECC errors"))
        pending = self.call("nvmlDeviceGetRetiredPagesPendingStatus", handle)
        if pending:
            self.findings.append((Status.WARNING, f"{label} has retired pages pending: reboot to retire them"))
        retired = self.call(
            "nvmlDeviceGetRetiredPages", handle, nvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
        )
        if retired:
            self.info["retired_pages_double_bit"] = len(retired)
        remapped = self.call("nvmlDeviceGetRemappedRows", handle)
        if remapped is not None:
            corrected, uncorrected, is_pending, failed = remapped
            self.info.update(remapped_corrected=corrected, remapped_uncorrected=uncorrected)
            if failed:
                self.findings.append((Status.CRITICAL, f"{label} row remapping failed: replace the GPU"))
            elif is_pending:
                self.findings.append((Status.WARNING, f"{label} has row remapping pending: reset or reboot"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _nvml_xids(nvml: Any, handles: list[Any], wait_ms: int) -> list[dict[str, Any]]:
    """Xid events NVML reports while we listen for `wait_ms`."""
    if wait_ms <= 0 or not handles:
        return []
    found: list[dict[str, Any]] = []
    try:
        event_set = nvml.nvmlEventSetCreate()
    except nvml.NVMLError:
        return []
    try:
        for handle in handles:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, event_set)
        while True:
            try:
                event = nvml.nvmlEventSetWait_v2(event_set, wait_ms)
            except nvml.NVMLError:  # NVMLError_Timeout: nothing more
                break
            found.append({"xid": int(event.eventData), "device": "nvml", "message": f"Xid {event.eventData}"})
            wait_ms = 0
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlEventSetFree(event_set)
    return found


def _load_nvml(context: ProbeContext) -> Any:
    if context.nvml is None:
        import pynvml

        context.nvml = pynvml
    return context.nvml


def run(context: ProbeContext) -> ProbeResult:
    nvml = _load_nvml(context)
    options = context.options
    must_have = expected(context)
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        why = f"NVIDIA driver/NVML not available ({exc})"
        if must_have:
            return ProbeResult(NAME, Status.CRITICAL, 0.0, f"a GPU is expected but {why}", {"unit": "GPUs"})
        return ProbeResult(
            NAME, Status.UNKNOWN, None, f"no GPU to check: {why}; set monitoring.gpu_expected if there should be one"
        )
    try:
        return _check_devices(context, nvml, options, must_have)
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def _check_devices(context: ProbeContext, nvml: Any, options: dict[str, Any], must_have: bool) -> ProbeResult:
    store = context.samples_dir / "gpu-seen.json"
    seen = read_json(store, {})
    try:
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as exc:
        return ProbeResult(NAME, Status.CRITICAL, 0.0, f"NVML cannot count GPUs ({exc})", {"unit": "GPUs"})
    findings: list[tuple[Status, str]] = []
    wanted = int(options["count"]) or (1 if must_have else 0)
    if count < wanted:
        findings.append((Status.CRITICAL, f"only {count} of {wanted} expected GPUs visible"))
    devices = [_Device(nvml, index) for index in range(count)]
    for device in devices:
        device.check(options)
        findings += device.findings
    uuids = {device.info.get("uuid") for device in devices if device.info.get("uuid")}
    vanished = sorted(set(seen.get("uuids", [])) - uuids)
    if vanished:
        findings.append((Status.CRITICAL, f"GPU(s) seen before are gone: {', '.join(vanished)} (fallen off the bus?)"))
    xids = _nvml_xids(nvml, [getattr(d, "handle", None) for d in devices if not d.lost and hasattr(d, "handle")],
                      int(options["xid_wait_ms"]))  # fmt: skip
    kernel, last_seq = kernel_xids(str(options["kmsg_path"]), int(seen.get("kmsg_seq", -1)))
    first_scan = "kmsg_seq" not in seen  # old Xids from before monitoring started are history, not news
    xids += [] if first_scan else kernel
    for event in xids:
        status = Status.CRITICAL if event["xid"] in CRITICAL_XIDS else Status.WARNING
        findings.append((status, f"Xid {event['xid']} ({event['device']})"))
    # Only GPUs that answered count as seen; a lost one stays expected.
    remembered = uuids | (set(seen.get("uuids", [])) if any(d.lost for d in devices) else set())
    write_json_atomic(store, {"uuids": sorted(remembered), "kmsg_seq": last_seq})
    status = worst([status for status, _ in findings])
    temperatures = [d.info["temperature_c"] for d in devices if "temperature_c" in d.info]
    details = {"unit": "°C max", "gpus": [d.info for d in devices], "xids": xids, "count": count}
    if findings:
        message = "; ".join(phrase for _, phrase in findings)
    else:
        hottest = f", hottest {max(temperatures)} °C" if temperatures else ""
        message = f"{count} GPU{'s' if count != 1 else ''} healthy{hottest}"
        if count == 0:
            status, message = Status.UNKNOWN, "NVML works but sees no GPU; set monitoring.gpu_expected if it should"
    measurements = [Measurement("gpus", float(count), minimum=0.0)]
    for device in devices:
        gpu = {"gpu": str(device.index)}
        if "temperature_c" in device.info:
            measurements.append(Measurement("gpu_temperature", float(device.info["temperature_c"]), gpu,
                                            warn=float(options["temperature_warning_c"]),
                                            crit=float(options["temperature_critical_c"])))  # fmt: skip
        if "memory_percent" in device.info:
            measurements.append(Measurement("gpu_memory_used", device.info["memory_used"] / device.info["memory_total"],
                                            gpu, warn=float(options["memory_warning_percent"]) / 100))  # fmt: skip
    temperature = float(max(temperatures)) if temperatures else None
    return ProbeResult(NAME, status, temperature, message, details, measurements=measurements)
