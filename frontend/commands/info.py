"""`dozen info`: the chip config (with derived sizes) and the ISA at a glance."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from frontend.devices import opencl_section
from frontend.tables import format_table
from isa.config import ChipConfig, load_config
from isa.table import INSN_BITS, OPS, Fault, describe

# Extra sections of `dozen info`: each callable takes the config and returns
# (title, headers, rows, json_value); its rows are printed as a table and json_value goes
# under the key `title.lower()` of `--json`. Other packages append to this list (for
# example the OpenCL device listing).
Section = tuple[str, list[str], list[list[Any]], Any]
EXTRA_SECTIONS: list[Callable[[ChipConfig], Section]] = []
EXTRA_SECTIONS.append(opencl_section)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("info", parents=[common],
                                   help="show the chip config and the ISA summary")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def config_rows(cfg: ChipConfig) -> list[list[Any]]:
    units = {"sp_bytes": "bytes", "acc_bytes": "bytes", "dram_bytes": "bytes",
             "dram_latency": "cycles", "dram_bw": "bytes/cycle", "queue_depth": "instructions",
             "token_depth": "tokens", "clock_mhz": "MHz", "row_bytes": "bytes",
             "sp_rows": "rows", "acc_rows": "rows", "peak_macs_per_cycle": "MACs/cycle",
             "peak_gops": "GOP/s"}
    rows: list[list[Any]] = []
    for key, value in cfg.to_dict().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        rows.append([key, shown, units.get(key, ""), "set"])
    for key, value in cfg.derived().items():
        rows.append([key, value, units.get(key, ""), "derived"])
    return rows


def isa_rows() -> list[list[Any]]:
    return [[op.opcode, op.mnemonic, op.unit.name.lower(), op.used_bits,
             ", ".join(f.name for f in op.fields) or "-", op.latency] for op in OPS]


def info_json(cfg: ChipConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "config": {**cfg.to_dict(), "derived": cfg.derived()},
        "isa": {"instruction_bits": INSN_BITS, "opcodes": describe(cfg),
                "faults": [{"code": int(f), "name": f.name.lower()} for f in Fault]},
    }
    for section in EXTRA_SECTIONS:
        title, _, _, value = section(cfg)
        out[title.lower()] = value
    return out


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.json:
        print(json.dumps(info_json(cfg), indent=2))
        return 0
    print(format_table(["key", "value", "unit", "kind"], config_rows(cfg),
                       title=f"Chip config {cfg.name!r}"))
    print(format_table(["op", "mnemonic", "unit", "bits", "fields", "latency (cycles)"],
                       isa_rows(),
                       title=f"ISA: {len(OPS)} opcodes, {INSN_BITS}-bit instructions "
                             "(full reference: isa/SPEC.md)"))
    for section in EXTRA_SECTIONS:
        title, headers, rows, _ = section(cfg)
        print(format_table(headers, rows, title=title))
    return 0
