"""Derived figures of a run: utilisation, bandwidth, per-unit time and a roofline verdict.

The roofline compares the program's operational intensity (MACs per DRAM byte) with
the machine balance (peak MACs per cycle / DRAM bytes per cycle = n^2 / dram_bw): a
program below the balance is memory-bound, above it compute-bound, and its bound is
min(n^2, intensity * dram_bw) MACs per cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator.decode import UNIT_NAMES

if TYPE_CHECKING:
    from simulator.api import Result


def report(result: Result) -> dict[str, Any]:
    cfg, c = result.cfg, result.counters
    cycles = max(c.cycles, 1)
    peak = cfg.peak_macs_per_cycle
    dram_bytes = result.dram_bytes_read + result.dram_bytes_written
    units = {}
    for u, name in enumerate(UNIT_NAMES):
        idle = c.cycles - c.busy[u] - c.stalled[u]
        units[name] = {"instructions": c.unit_instructions[u], "busy": c.busy[u],
                       "stalled_on_token": c.stalled[u], "idle": idle,
                       "busy_fraction": c.busy[u] / cycles}
    achieved = result.macs / cycles
    balance = peak / cfg.dram_bw
    if dram_bytes:
        intensity: float | None = result.macs / dram_bytes
        bound = min(float(peak), intensity * cfg.dram_bw)
        verdict = "compute" if intensity >= balance else "memory"
    else:  # no DRAM traffic at all: only the array can bound it
        intensity, bound, verdict = None, float(peak), "compute"
    roofline = {
        "operational_intensity": intensity,  # MACs per DRAM byte (None: no DRAM traffic)
        "machine_balance": balance,
        "bound": verdict,
        "attainable_macs_per_cycle": bound,
        "achieved_macs_per_cycle": achieved,
        # Memory-bound: achieved / (intensity * dram_bw) is the DRAM bandwidth used, which
        # also covers programs with no MACs at all.
        "fraction_of_bound": (achieved / bound if verdict == "compute"
                              else dram_bytes / (cycles * cfg.dram_bw)),
    }
    return {
        "config": cfg.name,
        "cycles": c.cycles,
        "time_us": c.cycles / cfg.clock_mhz,
        "instructions": c.instructions,
        "instructions_by_opcode": dict(c.by_opcode),
        "macs": result.macs,
        "mac_utilization": result.macs / (peak * cycles),
        "dram_bytes_read": result.dram_bytes_read,
        "dram_bytes_written": result.dram_bytes_written,
        "dram_bytes_per_cycle": dram_bytes / cycles,
        "dram_bandwidth_gbs": dram_bytes / cycles * cfg.clock_mhz / 1000,
        "dram_bandwidth_utilization": dram_bytes / (cycles * cfg.dram_bw),
        "units": units,
        "dispatcher_stalled": c.dispatch_stalled,
        "busiest_unit": max(units, key=lambda name: units[name]["busy"]),
        "roofline": roofline,
        "tokens_left": list(c.tokens_left),
    }


def summary_rows(rep: dict[str, Any]) -> list[tuple[str, Any]]:
    """(metric, value) rows for a readable table."""
    roof = rep["roofline"]
    rows: list[tuple[str, Any]] = [
        ("cycles", rep["cycles"]),
        ("time (us)", round(rep["time_us"], 3)),
        ("instructions", rep["instructions"]),
        ("MACs", rep["macs"]),
        ("MAC utilisation", f"{rep['mac_utilization']:.2%}"),
        ("DRAM bytes read", rep["dram_bytes_read"]),
        ("DRAM bytes written", rep["dram_bytes_written"]),
        ("DRAM bandwidth (B/cycle)", round(rep["dram_bytes_per_cycle"], 3)),
        ("DRAM bandwidth (GB/s)", round(rep["dram_bandwidth_gbs"], 3)),
        ("dispatcher stalled (cycles)", rep["dispatcher_stalled"]),
        ("busiest unit", f"{rep['busiest_unit']} "
                         f"({rep['units'][rep['busiest_unit']]['busy_fraction']:.1%} busy)"),
        ("operational intensity (MAC/B)", "n/a (no DRAM traffic)"
         if roof["operational_intensity"] is None else round(roof["operational_intensity"], 3)),
        ("machine balance (MAC/B)", round(roof["machine_balance"], 3)),
        ("roofline", f"{roof['bound']}-bound, at {roof['fraction_of_bound']:.1%} of its bound "
                     + (f"({roof['attainable_macs_per_cycle']:.4g} MAC/cycle)"
                        if roof["bound"] == "compute" else "(DRAM bandwidth)")),
    ]
    return rows


def unit_rows(rep: dict[str, Any]) -> list[tuple[str, int, int, int, int, str]]:
    """(unit, instructions, busy, stalled on token, idle, busy %) rows."""
    return [(name, u["instructions"], u["busy"], u["stalled_on_token"], u["idle"],
             f"{u['busy_fraction']:.1%}") for name, u in rep["units"].items()]


def hot_instructions(result: Result, top: int = 10) -> list[dict[str, Any]]:
    """The static instructions that kept their units busiest or waited longest on tokens."""
    from isa.asm import format_instruction

    c = result.counters
    ranked = sorted(range(len(c.busy_by_pc)),
                    key=lambda pc: c.busy_by_pc[pc] + c.stalled_by_pc[pc], reverse=True)
    rows = []
    for pc in ranked[:top]:
        if not c.issues_by_pc[pc]:
            break
        insn = result.code[pc]
        rows.append({"pc": pc, "unit": UNIT_NAMES[insn.unit], "issues": c.issues_by_pc[pc],
                     "busy": c.busy_by_pc[pc], "stalled_on_token": c.stalled_by_pc[pc],
                     "busy_share": c.busy_by_pc[pc] / max(c.cycles, 1),
                     "instruction": " ".join(format_instruction(insn).split())})
    return rows
