"""OpenCL plumbing: device choice, one context and queue per device, a program cache.

A device is chosen by a selector string (`--device` on the command line, else the
DOZEN_DEVICE environment variable, else the first GPU, else the first device):

- `0:1` picks platform 0, device 1 (the numbers `dozen info` prints);
- any other text picks the first device whose "platform / device" name contains it,
  case-insensitively (`nvidia`, `pocl`, `adreno`, `H100`).

Programs are built once per (device, source, options) and kept for the process: the
OpenCL compilers here (PoCL especially) take a second or more per build.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from isa.errors import DozenError, InputError

ENV_VAR = "DOZEN_DEVICE"


class BackendUnavailable(DozenError):
    """The backend cannot run here (no OpenCL runtime or no device): exit code 2."""


@dataclass(frozen=True)
class DeviceInfo:
    """What `dozen info` shows of one OpenCL device."""

    index: str  # "platform:device"
    platform: str
    name: str
    kind: str  # GPU, CPU, ACCELERATOR
    version: str
    compute_units: int
    global_mem_mib: int
    local_mem_kib: int
    max_work_group: int

    @property
    def label(self) -> str:
        return f"{self.platform} / {self.name}"


def _cl() -> Any:
    try:
        import pyopencl as cl
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise BackendUnavailable(f"OpenCL is unavailable: cannot import pyopencl ({exc})") from exc
    return cl


def _kind(cl: Any, device: Any) -> str:
    kinds = [(cl.device_type.GPU, "GPU"), (cl.device_type.CPU, "CPU"),
             (cl.device_type.ACCELERATOR, "ACCELERATOR")]
    return next((name for flag, name in kinds if device.type & flag), "OTHER")


def _all_devices() -> list[tuple[str, Any, Any]]:
    cl = _cl()
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:  # no ICD at all
        raise BackendUnavailable(f"no OpenCL platform found ({exc})") from exc
    found = []
    for p_index, platform in enumerate(platforms):
        try:
            devices = platform.get_devices()
        except cl.Error:
            continue
        for d_index, device in enumerate(devices):
            found.append((f"{p_index}:{d_index}", platform, device))
    return found


def list_devices() -> list[DeviceInfo]:
    """Every OpenCL device on every platform, in `platform:device` order."""
    cl = _cl()
    return [DeviceInfo(index=index, platform=platform.name.strip(), name=device.name.strip(),
                       kind=_kind(cl, device), version=device.version.strip(),
                       compute_units=int(device.max_compute_units),
                       global_mem_mib=int(device.global_mem_size) // 2**20,
                       local_mem_kib=int(device.local_mem_size) // 1024,
                       max_work_group=int(device.max_work_group_size))
            for index, platform, device in _all_devices()]


def select_device(selector: str | None = None) -> Any:
    """The pyopencl device a selector names (see the module docstring)."""
    cl = _cl()
    selector = selector if selector is not None else os.environ.get(ENV_VAR, "")
    devices = _all_devices()
    if not devices:
        raise BackendUnavailable("no OpenCL device found")
    selector = selector.strip()
    if not selector:
        gpus = [d for _, _, d in devices if d.type & cl.device_type.GPU]
        return gpus[0] if gpus else devices[0][2]
    for index, _, device in devices:
        if selector == index:
            return device
    for _, platform, device in devices:  # platform versions name PoCL, the names do not
        if selector.lower() in f"{platform.name} / {device.name} / {platform.version}".lower():
            return device
    names = ", ".join(f"{i} ({p.name.strip()} / {d.name.strip()})" for i, p, d in devices)
    raise InputError(f"no OpenCL device matches {selector!r}; devices: {names}")


class Runtime:
    """A context and an in-order profiling queue on one device, with a program cache."""

    def __init__(self, device: Any):
        cl = _cl()
        self.cl = cl
        self.device = device
        self.context = cl.Context([device])
        self.queue = cl.CommandQueue(self.context,
                                     properties=cl.command_queue_properties.PROFILING_ENABLE)
        self._programs: dict[tuple[str, str], Any] = {}
        self._kernels: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.device.platform.name.strip()} / {self.device.name.strip()}"

    @property
    def is_gpu(self) -> bool:
        return bool(self.device.type & self.cl.device_type.GPU)

    def program(self, source: str, options: str = "") -> Any:
        """Build `source` once; later calls with the same text return the cached program."""
        key = (source, options)
        with self._lock:
            built = self._programs.get(key)
            if built is None:
                try:
                    with warnings.catch_warnings():  # build logs with mere remarks
                        warnings.simplefilter("ignore", self.cl.CompilerWarning)
                        built = self.cl.Program(self.context, source).build(options=options)
                except self.cl.RuntimeError as exc:
                    raise DozenError(f"OpenCL build failed on {self.name}: "
                                     f"{str(exc).splitlines()[0]}") from exc
                self._programs[key] = built
        return built

    def kernel(self, source: str, name: str, options: str = "") -> Any:
        """One shared kernel object per (program, name): creating kernels is not free."""
        key = (source, options, name)
        with self._lock:
            found = self._kernels.get(key)
        if found is None:
            found = self.cl.Kernel(self.program(source, options), name)
            with self._lock:
                self._kernels[key] = found
        return found


_RUNTIMES: dict[Any, Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def runtime(selector: str | None = None) -> Runtime:
    """The shared Runtime for the selected device (created on first use)."""
    device = select_device(selector)
    with _RUNTIMES_LOCK:
        found = _RUNTIMES.get(device.int_ptr)
        if found is None:
            found = _RUNTIMES[device.int_ptr] = Runtime(device)
    return found
