"""The GPUs of this box: discovered through NVML, or declared in the configuration."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any, Protocol

from godminer.engine.scheduler import Gpu
from godminer.settings import GpuSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuStatus:
    """A live reading of one GPU."""

    index: int
    name: str
    memory_gb: float
    memory_used_gb: float = 0.0
    utilization: float = 0.0
    temperature_c: float | None = None
    healthy: bool = True
    error: str | None = None


class Inventory(Protocol):
    def gpus(self) -> list[Gpu]:
        """The scheduler's view: index, memory, health."""
        ...

    def status(self) -> list[GpuStatus]:
        """A fresh reading (utilisation, memory used, health)."""
        ...


class StaticInventory:
    """GPUs declared in the configuration (or built by a test); readings can be set by hand."""

    def __init__(self, statuses: list[GpuStatus]) -> None:
        self._statuses = {s.index: s for s in statuses}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: GpuSettings) -> StaticInventory:
        if settings.devices:
            return cls([GpuStatus(d.index, d.name, d.memory_gb) for d in settings.devices])
        return cls([GpuStatus(i, "declared", settings.memory_gb) for i in range(settings.count)])

    @classmethod
    def uniform(cls, count: int, memory_gb: float = 80.0, name: str = "fake") -> StaticInventory:
        return cls([GpuStatus(i, name, memory_gb) for i in range(count)])

    def gpus(self) -> list[Gpu]:
        return [Gpu(s.index, s.memory_gb, healthy=s.healthy, name=s.name) for s in self.status()]

    def status(self) -> list[GpuStatus]:
        with self._lock:
            return [self._statuses[i] for i in sorted(self._statuses)]

    def set_reading(self, index: int, **values: Any) -> None:
        with self._lock:
            self._statuses[index] = replace(self._statuses[index], **values)


class NvmlInventory:
    """GPUs as NVML reports them; a GPU whose query fails or that has uncorrected ECC errors is unhealthy."""

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._count = pynvml.nvmlDeviceGetCount()

    def gpus(self) -> list[Gpu]:
        return [Gpu(s.index, s.memory_gb, healthy=s.healthy, name=s.name) for s in self.status()]

    def status(self) -> list[GpuStatus]:
        nv = self._nvml
        out = []
        for i in range(self._count):
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                name = nv.nvmlDeviceGetName(handle)
                mem = nv.nvmlDeviceGetMemoryInfo(handle)
                util = nv.nvmlDeviceGetUtilizationRates(handle)
                temp = nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)
                error = None
                try:
                    ecc = nv.nvmlDeviceGetTotalEccErrors(
                        handle, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC
                    )
                    if ecc:
                        error = f"{ecc} uncorrected ECC errors"
                except nv.NVMLError:
                    pass  # ECC not supported on this GPU
                out.append(GpuStatus(
                    i, name if isinstance(name, str) else name.decode(), mem.total / 2**30, mem.used / 2**30,
                    util.gpu / 100.0, float(temp), healthy=error is None, error=error,
                ))
            except nv.NVMLError as exc:
                out.append(GpuStatus(i, "unknown", 0.0, healthy=False, error=str(exc)))
        return out


def build_inventory(settings: GpuSettings) -> Inventory:
    if settings.inventory == "config":
        return StaticInventory.from_settings(settings)
    try:
        return NvmlInventory()
    except Exception as exc:  # no driver, no GPU: a box with nothing to offer
        log.warning("NVML unavailable (%s); no GPUs discovered", exc)
        return StaticInventory([])
