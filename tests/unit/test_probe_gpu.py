"""The gpu probe's logic against a fake NVML module (this machine has no GPU)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors import probes
from monitors.probes import gpu
from monitors.result import ProbeContext, Status


class NVMLError(Exception):
    pass


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801 - pynvml's names
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    pass


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801
    pass


class NVMLError_Timeout(NVMLError):  # noqa: N801
    pass


class FakeGpu:
    def __init__(  # one knob per NVML reading
        self, uuid: str, temperature: int = 55, used: int = 2, total: int = 16, ecc: int = 0,
        pending_pages: int = 0, remapped=(0, 0, 0, 0), lost: bool = False, ecc_supported: bool = True,
    ) -> None:  # fmt: skip
        self.uuid, self.temperature, self.used, self.total, self.ecc = uuid, temperature, used, total, ecc
        self.pending_pages, self.remapped, self.lost, self.ecc_supported = pending_pages, remapped, lost, ecc_supported


class FakeNvml:
    """The pynvml functions the probe calls, answering from FakeGpu objects."""

    NVMLError = NVMLError
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVML_TEMPERATURE_GPU = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
    nvmlEventTypeXidCriticalError = 8

    def __init__(self, gpus: list[FakeGpu], driver: bool = True, xids: list[int] | None = None) -> None:
        self.gpus, self.driver, self.xids = gpus, driver, list(xids or [])
        self.initialised = self.shut_down = 0

    def nvmlInit(self) -> None:  # noqa: N802
        if not self.driver:
            raise NVMLError_DriverNotLoaded("Driver Not Loaded")
        self.initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut_down += 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:  # noqa: N802
        gpu_ = self.gpus[index]
        if gpu_.lost:
            raise NVMLError_GpuIsLost("GPU is lost")
        return gpu_

    def nvmlDeviceGetName(self, handle: FakeGpu) -> bytes:  # noqa: N802
        return b"NVIDIA RTX A4000"

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:  # noqa: N802
        return handle.uuid

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:  # noqa: N802
        return handle.temperature

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu):  # noqa: N802
        return SimpleNamespace(used=handle.used * 2**30, total=handle.total * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu):  # noqa: N802
        return SimpleNamespace(gpu=37, memory=12)

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeGpu, kind: int, counter: int) -> int:  # noqa: N802
        if not handle.ecc_supported:
            raise NVMLError_NotSupported("Not Supported")
        return handle.ecc

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: FakeGpu) -> int:  # noqa: N802
        return handle.pending_pages

    def nvmlDeviceGetRetiredPages(self, handle: FakeGpu, cause: int) -> list[int]:  # noqa: N802
        return []

    def nvmlDeviceGetRemappedRows(self, handle: FakeGpu):  # noqa: N802
        return handle.remapped

    def nvmlEventSetCreate(self) -> str:  # noqa: N802
        return "set"

    def nvmlDeviceRegisterEvents(self, handle: FakeGpu, kinds: int, event_set: str) -> None:  # noqa: N802
        pass

    def nvmlEventSetWait_v2(self, event_set: str, timeout_ms: int):  # noqa: N802
        if not self.xids:
            raise NVMLError_Timeout("Timeout")
        return SimpleNamespace(eventData=self.xids.pop(0), device=None)

    def nvmlEventSetFree(self, event_set: str) -> None:  # noqa: N802
        pass


def context(tmp_path: Path, nvml: FakeNvml, expected: bool = True, kmsg: str = "", **options) -> ProbeContext:
    monitoring = MonitoringConfig(gpu_expected=expected, probes={"gpu": {"kmsg_path": kmsg, **options}})
    config = SiteConfig(source=None, monitoring=monitoring)
    instance = InstanceConfig(name="h5gpu", directory=tmp_path)
    return ProbeContext(config, instance, probes.options("gpu", monitoring), now=1_800_000_000.0, nvml=nvml)


def test_healthy_gpus(tmp_path: Path) -> None:
    nvml = FakeNvml([FakeGpu("GPU-a", temperature=61), FakeGpu("GPU-b", temperature=48)])
    result = gpu.run(context(tmp_path, nvml))
    assert result.status is Status.OK and result.message == "2 GPUs healthy, hottest 61 °C"
    assert result.value == 61.0 and result.details["gpus"][0]["utilisation_percent"] == 37
    assert nvml.initialised == nvml.shut_down == 1


def test_no_driver_is_unknown_unless_a_gpu_is_expected(tmp_path: Path) -> None:
    result = gpu.run(context(tmp_path, FakeNvml([], driver=False), expected=False))
    assert result.status is Status.UNKNOWN
    assert result.message.startswith("no GPU to check: NVIDIA driver/NVML not available (Driver Not Loaded)")
    result = gpu.run(context(tmp_path, FakeNvml([], driver=False), expected=True))
    assert result.status is Status.CRITICAL and result.message.startswith("a GPU is expected but NVIDIA driver")


def test_fewer_gpus_than_expected(tmp_path: Path) -> None:
    result = gpu.run(context(tmp_path, FakeNvml([FakeGpu("GPU-a")]), count=2))
    assert result.status is Status.CRITICAL and "only 1 of 2 expected GPUs visible" in result.message


def test_gpu_that_falls_off_the_bus(tmp_path: Path) -> None:
    gpus = [FakeGpu("GPU-a"), FakeGpu("GPU-b")]
    assert gpu.run(context(tmp_path, FakeNvml(gpus))).status is Status.OK
    gpus[1].lost = True
    result = gpu.run(context(tmp_path, FakeNvml(gpus)))
    assert result.status is Status.CRITICAL and "GPU 1 has fallen off the bus" in result.message
    # it disappears from the bus entirely at the next run: still missed, by its UUID
    result = gpu.run(context(tmp_path, FakeNvml(gpus[:1])))
    assert result.status is Status.CRITICAL and "GPU(s) seen before are gone: GPU-b" in result.message


@pytest.mark.parametrize(
    ("gpu_", "status", "phrase"),
    [
        (FakeGpu("g", temperature=88), Status.WARNING, "GPU 0 at 88 °C"),
        (FakeGpu("g", temperature=97), Status.CRITICAL, "GPU 0 at 97 °C"),
        (FakeGpu("g", used=16, total=16), Status.WARNING, "GPU 0 memory 100% used"),
        (FakeGpu("g", ecc=3), Status.CRITICAL, "GPU 0 has 3 uncorrected ECC errors"),
        (FakeGpu("g", pending_pages=1), Status.WARNING, "GPU 0 has retired pages pending"),
        (FakeGpu("g", remapped=(2, 1, 1, 0)), Status.WARNING, "GPU 0 has row remapping pending"),
        (FakeGpu("g", remapped=(2, 1, 0, 1)), Status.CRITICAL, "GPU 0 row remapping failed"),
        (FakeGpu("g", ecc_supported=False), Status.OK, "1 GPU healthy"),
    ],
)
def test_device_findings(tmp_path: Path, gpu_: FakeGpu, status: Status, phrase: str) -> None:
    result = gpu.run(context(tmp_path, FakeNvml([gpu_])))
    assert result.status is status and phrase in result.message


def test_xid_events_from_nvml(tmp_path: Path) -> None:
    result = gpu.run(context(tmp_path, FakeNvml([FakeGpu("g")], xids=[13])))
    assert result.status is Status.WARNING and "Xid 13" in result.message
    result = gpu.run(context(tmp_path, FakeNvml([FakeGpu("g")], xids=[79])))
    assert result.status is Status.CRITICAL and "Xid 79" in result.message


def test_xid_lines_in_the_kernel_log_count_once(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,100,5,-;NVRM: loading driver\n4,101,6,-;NVRM: Xid (PCI:0000:01:00): 31, pid=1, Ch 00000008\n")
    nvml = FakeNvml([FakeGpu("g")])
    first = gpu.run(context(tmp_path, nvml, kmsg=str(kmsg)))
    assert first.status is Status.OK  # history from before monitoring started is not news
    with kmsg.open("a") as handle:
        handle.write("4,102,7,-;NVRM: Xid (PCI:0000:01:00): 79, pid=0, GPU has fallen off the bus.\n")
    second = gpu.run(context(tmp_path, nvml, kmsg=str(kmsg)))
    assert second.status is Status.CRITICAL and "Xid 79 (PCI:0000:01:00)" in second.message
    assert "Xid 31" not in second.message
    third = gpu.run(context(tmp_path, nvml, kmsg=str(kmsg)))
    assert third.status is Status.OK


def test_enabled_only_where_a_gpu_is_expected_or_present(tmp_path: Path) -> None:
    instance = InstanceConfig(name="h5gpu", directory=tmp_path, gpu="no")
    ctx = ProbeContext(SiteConfig(source=None), instance)
    assert gpu.enabled(ctx) is False
    ctx = ProbeContext(SiteConfig(source=None, monitoring=MonitoringConfig(gpu_expected=True)), instance)
    assert gpu.enabled(ctx) is True


def test_temperature_and_memory_are_measured_per_gpu(tmp_path: Path) -> None:
    nvml = FakeNvml([FakeGpu("GPU-a", temperature=61, used=4, total=16), FakeGpu("GPU-b", temperature=48)])
    measured = {(m.quantity, m.labels.get("gpu")): m for m in gpu.run(context(tmp_path, nvml)).measurements}
    assert measured[("gpus", None)].value == 2
    temperature = measured[("gpu_temperature", "0")]
    assert (temperature.value, temperature.warn, temperature.crit) == (61, 85, 95)
    assert measured[("gpu_memory_used", "0")].value == 0.25 and measured[("gpu_memory_used", "1")].value == 0.125
