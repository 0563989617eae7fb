"""RTL figures: simulation speed on Verilator and place & route on an ECP5-85F.

Speed: one compiled int8 GEMM (MATMUL) on the tiny chip runs on the exported Verilog
under Verilator (the DRAM a byte array in the Verilog bench, so the simulator runs free)
and, side by side, on the cycle-level Python simulator; the figure is simulated cycles
per wall-clock second of the run itself (not the simulator process's start or the DRAM
image's load and dump), and the reference the Python simulator's rate on the same
program (both results must agree byte for byte and cycle for cycle, or the row fails).

Synthesis: the core (behind `rtl.synth.PinWrapper`) through yosys and nextpnr for an
ECP5-85F, target >= 100 MHz. With `quick`, the tiny chip's datapath and control with the
smallest SRAMs a chip may have (2n and n rows: SRAMs are built from flip-flops, see
`rtl.synth.check_fits`); otherwise the config given, which is refused at once when its
SRAMs cannot fit. WebAssembly tools on a small machine take many minutes even so.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from frontend.benchmarks import row
from isa.config import PRESETS, ChipConfig
from isa.errors import DozenError

TARGET_FMAX_MHZ = 100.0


def _gemm_program(m: int, k: int, n: int):
    from compiler.lower import compile_graph
    from frontend.tensor import Tensor

    rng = np.random.default_rng(3)
    a = Tensor.input("a", (m, k), "int8")
    w = Tensor(rng.integers(-8, 8, (k, n)).astype(np.int8))
    program = compile_graph((a @ w).graph(), PRESETS["tiny"])  # MATMUL on the int8 array
    return program, {"a": rng.integers(-128, 128, (m, k)).astype(np.int8)}


def verilator_speed(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    """Simulated cycles per second: Verilator (cocotb) vs the Python simulator, same program."""
    from rtl.cocotb_bench import run_verilog, simulator_available
    from rtl.dram import with_inputs
    from simulator import Simulator

    if not simulator_available("verilator"):
        return [row("rtl.verilator_speed", "available", False)]
    size = 16 if quick else 48
    program, inputs = _gemm_program(size, size, size)
    baked = with_inputs(program, inputs)
    run_verilog([baked], PRESETS["tiny"])  # build (cached) and warm up
    rtl = run_verilog([baked], PRESETS["tiny"])[0]
    rtl_s = max(rtl.run_seconds, 1e-9)  # the run alone: no process start, no DRAM load
    start = time.perf_counter()
    sim = Simulator(program).run(inputs)
    sim_s = time.perf_counter() - start
    same = rtl.cycles == sim.cycles and bool(np.array_equal(rtl.dram, sim.dram))
    rtl_rate, sim_rate = rtl.cycles / rtl_s, sim.cycles / sim_s
    name = f"rtl.verilator_speed(gemm {size}^3 int8, tiny)"
    return [row(name, "rtl_cycles_per_s", round(rtl_rate), reference=round(sim_rate)),
            row(name, "rtl_clocks_per_s", round(rtl.clocks / rtl_s)),
            row(name, "cycles", rtl.cycles, reference=sim.cycles),
            row(name, "rtl_equals_simulator", same)]


def synth_ecp5(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    """LUTs, FFs, BRAMs, DSPs and Fmax of the placed and routed core on an ECP5-85F."""
    from rtl.synth import synthesize

    tiny = PRESETS["tiny"]
    chip = dataclasses.replace(tiny, name="tiny-minsram", sp_bytes=2 * tiny.row_bytes * tiny.n,
                               acc_bytes=tiny.row_bytes * tiny.n) if quick else cfg
    name = f"rtl.synth_ecp5({chip.name}, n={chip.n})"
    try:
        report = synthesize(chip, "ecp5", freq_mhz=TARGET_FMAX_MHZ)
    except DozenError as exc:
        return [row(name, f"failed: {exc}", False)]
    rows = [row(name, key, value) for key, value in report.to_dict().items()
            if key not in ("target", "fmax_mhz", "luts", "device_luts")]
    rows.insert(0, row(name, "luts", report.luts, target=report.device_luts,
                       higher_is_better=False))
    rows.append(row(name, "fmax_mhz", report.fmax_mhz or 0.0, target=TARGET_FMAX_MHZ))
    return rows


BENCHMARKS = [verilator_speed, synth_ecp5]
