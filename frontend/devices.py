"""OpenCL devices on the command line: the `--device` option and the `dozen info` listing.

The selection logic lives in `compiler.opencl_runtime` (the backend needs it too); a
selector is `platform:device` (`0:1`) or text matched against "platform / device" names
(`nvidia`, `pocl`). `--device` overrides the DOZEN_DEVICE environment variable.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from compiler.opencl_runtime import ENV_VAR, BackendUnavailable, list_devices
from isa.config import ChipConfig


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", metavar="SELECTOR",
                        help=f"OpenCL device: 'platform:device' index or a name fragment "
                             f"(default: ${ENV_VAR}, else the first GPU, else the first device)")


def apply_device(args: argparse.Namespace) -> str | None:
    """The device selector in force: `--device`, else DOZEN_DEVICE, else None (default).

    Pass it on as the backends' `device` option; the environment is left untouched."""
    return getattr(args, "device", None) or os.environ.get(ENV_VAR) or None


def device_rows() -> tuple[list[list[Any]], list[dict[str, Any]], str | None]:
    """Rows for a table, the same as JSON, and an error line when OpenCL is unavailable."""
    try:
        devices = list_devices()
    except BackendUnavailable as exc:
        return [], [], str(exc)
    rows = [[d.index, d.platform, d.name, d.kind, d.version, d.compute_units,
             d.global_mem_mib, d.local_mem_kib, d.max_work_group] for d in devices]
    return rows, [d.__dict__ for d in devices], None


def opencl_section(_: ChipConfig) -> tuple[str, list[str], list[list[Any]], Any]:
    """The OpenCL section of `dozen info` (see frontend.commands.info.EXTRA_SECTIONS)."""
    rows, as_json, error = device_rows()
    selected = os.environ.get(ENV_VAR, "")
    title = "OpenCL devices"
    if error:
        rows = [["-", error, "", "", "", 0, 0, 0, 0]]
    headers = ["index", "platform", "device", "kind", "version", "CUs", "memory MiB",
               "local KiB", "max work-group"]
    return title, headers, rows, {"selected": selected or None, "devices": as_json,
                                  "error": error}
