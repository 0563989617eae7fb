"""`dozen rtl`: the chip's Amaranth RTL: export Verilog, synthesise, run programs on it.

    dozen rtl verilog [--config tiny] [--imem-depth N] -o dozen.v
    dozen rtl synth --target ecp5|ice40 [--config tiny] [--unit NAME] [--seed N]
                    [--speed 6|7|8] [--no-pnr | --no-route] [--json]
    dozen rtl paths [WORKDIR/top.json | WORKDIR/placed.json | --config tiny] [--top N]
                    [--trace CELL] [--fanout N]
    dozen rtl run prog.dzn [--sim amaranth|verilator] [--input NAME=x.npy] [--json]

`rtl run` executes a program on the RTL and checks it against the cycle-level simulator:
same final DRAM bytes and the same cycle count, or it exits with 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from frontend.tables import format_table
from isa.config import load_config
from isa.container import Program
from isa.errors import DozenError, InputError
from isa.table import Fault


class RtlMismatch(DozenError):
    """The RTL and the simulator disagree (exit code 1)."""

    exit_code = 1


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("rtl", help="export, synthesise or run the chip's RTL",
                                   description="The chip's Amaranth RTL.")
    sub = parser.add_subparsers(dest="rtl_command", metavar="ACTION", required=True)

    verilog = sub.add_parser("verilog", parents=[common], help="export the core as Verilog")
    verilog.add_argument("-o", "--output", type=Path, default=Path("dozen.v"),
                         help="output file (default dozen.v)")
    verilog.add_argument("--imem-depth", type=int, default=1024, metavar="N",
                         help="instruction memory words (default 1024)")
    verilog.set_defaults(func=run_verilog)

    synth = sub.add_parser("synth", parents=[common],
                           help="synthesise and place & route; print LUTs, FFs, BRAMs, DSPs, Fmax")
    synth.add_argument("--target", choices=["ecp5", "ice40"], default="ecp5")
    synth.add_argument("--json", action="store_true", help="print one JSON object")
    synth.add_argument("--imem-depth", type=int, default=64, metavar="N")
    synth.add_argument("--seed", type=int, metavar="N",
                       help="nextpnr's placement seed (the Fmax of one design varies with it)")
    synth.add_argument("--speed", type=int, metavar="GRADE",
                       help="the ECP5's speed grade to time against: 6 (default, the "
                            "slowest), 7 or 8")
    synth.add_argument("--no-pnr", dest="place", action="store_false",
                       help="yosys and nextpnr's packing only: the cell counts against the "
                            "device's, no Fmax (minutes, where place and route takes the "
                            "better part of an hour)")
    synth.add_argument("--no-route", dest="route", action="store_false",
                       help="stop after placement: nextpnr's Fmax estimate then, and the "
                            "slowest path over the placed netlist (WORKDIR/placed.json for "
                            "`rtl paths`)")
    synth.add_argument("--workdir", type=Path,
                       help="keep the tool files here (nextpnr.log holds the critical path)")
    synth.add_argument("--unit", metavar="NAME",
                       help="synthesise one part of the core alone (compute, requant, vector, "
                            "dot, reduce, decode, queue) to find its Fmax and critical path")
    synth.set_defaults(func=run_synth)

    paths = sub.add_parser("paths", parents=[common],
                           help="the slowest register inputs of an ECP5 netlist, "
                                "estimated without place and route")
    paths.add_argument("netlist", type=Path, nargs="?",
                       help="yosys JSON (top.json of `rtl synth --workdir`), or nextpnr's "
                            "placed.json (`rtl synth --no-route`: connections timed by "
                            "distance); without it, yosys maps the --config core first")
    paths.add_argument("--workdir", type=Path, help="keep yosys's files here")
    paths.add_argument("--top", type=int, default=20, metavar="N", help="endpoints to list")
    paths.add_argument("--trace", metavar="CELL",
                       help="the latest path into the first cell whose name starts so")
    paths.add_argument("--fanout", type=int, default=0, metavar="N",
                       help="also list the N registers whose outputs reach the most cells")
    paths.set_defaults(func=run_paths)

    runp = sub.add_parser("run", parents=[common],
                          help="run a .dzn program on the RTL and check it against the simulator")
    runp.add_argument("program", type=Path)
    runp.add_argument("--sim", choices=["amaranth", "verilator", "icarus"], default="amaranth",
                      help="RTL simulator (default amaranth)")
    runp.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy")
    runp.add_argument("--json", action="store_true", help="print one JSON object")
    runp.add_argument("--max-clocks", type=int, default=2_000_000, metavar="N")
    runp.set_defaults(func=run_program)


def _imem_depth(value: int) -> int:
    if not 1 <= value <= 1 << 16:
        raise InputError(f"--imem-depth must be in 1..65536, got {value}")
    return value


def run_verilog(args: argparse.Namespace) -> int:
    from rtl.export import write_verilog

    cfg = load_config(args.config)
    size = write_verilog(args.output, cfg, _imem_depth(args.imem_depth))
    print(f"{args.output}: Verilog of the {cfg.name!r} core (n={cfg.n}, "
          f"{args.imem_depth}-word instruction memory), {size:,} bytes")
    return 0


def run_paths(args: argparse.Namespace) -> int:
    from rtl.arrival import Netlist, PlacedNetlist
    from rtl.synth import check_fits, synthesize_netlist, wrapped_core

    if args.netlist is None:
        cfg = load_config(args.config)
        check_fits(cfg, "ecp5")
        work = synthesize_netlist(wrapped_core(cfg, 64, "ecp5"), "ecp5", args.workdir)
        args.netlist = work / "top.json"
    try:
        placed = PlacedNetlist.is_placed(args.netlist)
        netlist = (PlacedNetlist if placed else Netlist)(args.netlist)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{args.netlist}: not a yosys JSON netlist with a 'top' module "
                         f"({exc.__class__.__name__}: {exc})") from None
    rows = [(f"{e.ns:.1f}", e.name) for e in netlist.endpoints()[:args.top]]
    print(format_table(["ns (estimated)", "register input"], rows,
                       title=f"slowest endpoints of {args.netlist}"), end="")
    if args.fanout > 0:
        rows = [(f"{count:,}", name) for count, name in netlist.fanouts()[:args.fanout]]
        print(format_table(["loads", "register"], rows,
                           title=f"registers with the most loads in {args.netlist}"), end="")
    if args.trace:
        found = next((c for c in netlist.cells if c.startswith(args.trace)), None)
        if found is None:
            raise InputError(f"no cell named {args.trace}... in {args.netlist}")
        rows = [(f"{ns:.1f}", kind, name) for ns, kind, name in netlist.path_to(found)]
        print(format_table(["ns", "cell", "name"], rows, title=f"latest path into {found}"),
              end="")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from rtl.synth import synthesize, synthesize_unit
    from rtl.synth_units import UNITS

    cfg = load_config(args.config)
    if args.unit is not None:
        if not args.route:
            raise InputError("--no-route places the whole core; a --unit is placed and routed")
        if args.unit not in UNITS:
            raise InputError(f"unknown unit {args.unit!r} (units: {', '.join(UNITS)})")
        report = synthesize_unit(args.unit, cfg, args.target, workdir=args.workdir,
                                 seed=args.seed, place=args.place, speed=args.speed)
        what = f"{args.unit} unit of {cfg.name!r}"
    else:
        report = synthesize(cfg, args.target, _imem_depth(args.imem_depth), workdir=args.workdir,
                            seed=args.seed, place=args.place, speed=args.speed,
                            route=args.route)
        what = f"{cfg.name!r} core"
    data = report.to_dict()
    data["fits"] = report.luts <= report.device_luts if report.device_luts else None
    if report.critical_path is not None:
        data["critical_path"] = report.critical_path.describe()
    if args.json:
        print(json.dumps(data))
    else:
        rows = [(key, value) for key, value in data.items()]
        print(format_table(["figure", "value"], rows, title=f"{what} on {args.target}"), end="")
    return 0


def run_program(args: argparse.Namespace) -> int:
    from frontend.npy_args import load_inputs
    from rtl.testbench import run_programs
    from simulator import SimulationError, Simulator

    program = Program.load(args.program)
    if args.config is not None and load_config(args.config) != program.config:
        raise InputError(f"{args.program} was built for config {program.config.name!r}; "
                         "--config must match it")
    inputs = load_inputs(args.input)
    try:
        sim = Simulator(program).run(inputs)
        sim_fault = Fault.NONE
    except SimulationError as exc:
        sim, sim_fault = None, exc.fault
    if args.sim == "amaranth":
        rtl = run_programs([program], inputs=[inputs], max_clocks=args.max_clocks)[0]
    else:
        from rtl.cocotb_bench import run_verilog as run_hdl
        from rtl.cocotb_bench import simulator_available
        from rtl.dram import with_inputs

        if not simulator_available(args.sim):
            raise InputError(f"{args.sim} is not installed")
        rtl = run_hdl([with_inputs(program, inputs)], simulator=args.sim,
                      max_clocks=args.max_clocks)[0]
    same_dram = sim is not None and rtl.fault is Fault.NONE and bool(np.array_equal(sim.dram,
                                                                                    rtl.dram))
    same_cycles = sim is not None and rtl.cycles == sim.cycles
    ok = (same_dram and same_cycles) if sim is not None else rtl.fault == sim_fault
    summary = {"rtl_cycles": rtl.cycles, "sim_cycles": sim.cycles if sim else None,
               "rtl_fault": rtl.fault.name, "sim_fault": sim_fault.name,
               "dram_identical": same_dram, "clocks": rtl.clocks, **rtl.counters, "ok": ok}
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_table(["figure", "value"], list(summary.items()),
                           title=f"{args.program} on the RTL ({args.sim})"), end="")
    if not ok:
        raise RtlMismatch("the RTL and the simulator disagree: "
                          f"cycles {rtl.cycles} vs {sim.cycles if sim else '-'}, "
                          f"DRAM identical: {same_dram}, faults {rtl.fault.name} vs "
                          f"{sim_fault.name}")
    return 0
