# amaranth: UnusedElaboratable=no
"""Synthesis reports: yosys and nextpnr on a small design, and the report parsing.

Place & route of the core itself takes minutes even for the tiny chip with the
WebAssembly tools, so it lives in the benchmark (`dozen bench`, frontend/benchmarks/rtl.py).
"""

from __future__ import annotations

import json
import re

import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.synth import SynthError, count_cells, parse_fmax, synthesize_design


class MacCounter(wiring.Component):
    """A registered accumulator of a*b and a^b: LUTs, flip-flops and a DSP candidate."""

    def __init__(self):
        super().__init__({"a": In(8), "b": In(8), "total": Out(20)})

    def elaborate(self, platform):
        m = Module()
        acc = Signal(20)
        mix = Signal(20)
        m.d.sync += [acc.eq(acc + self.a.as_signed() * self.b.as_signed()),
                     mix.eq((mix << 1) ^ (self.a ^ self.b) ^ mix[19])]
        m.d.comb += self.total.eq(acc ^ mix)
        return m


def test_place_and_route_of_a_small_design_reports_every_figure(tmp_path):
    report = synthesize_design(MacCounter(), "ice40", tmp_path, freq_mhz=12.0, seed=7)
    figures = report.to_dict()
    assert set(figures) == {"target", "luts", "ffs", "brams", "dsps", "fmax_mhz", "device_luts",
                            "speed", "routed"}
    assert figures["routed"] is True
    assert figures["device_luts"] == 5_280 and figures["speed"] is None
    assert figures["target"] == "ice40"
    assert figures["luts"] > 0 and figures["ffs"] >= 20
    assert figures["fmax_mhz"] is not None and figures["fmax_mhz"] > 12.0


def test_yosys_only_counts_cells_against_the_device(capsys):
    """`--no-pnr`: the counts and whether they fit the device, no Fmax, no nextpnr."""
    from frontend.cli import main

    assert main(["rtl", "synth", "--unit", "queue", "--config", "tiny", "--no-pnr",
                 "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["fmax_mhz"] is None and "critical_path" not in figures
    assert 0 < figures["luts"] < figures["device_luts"] == 83_640 and figures["fits"] is True


class XorBank(wiring.Component):
    """Registers of a ^ b ^ c, wide enough to need more logic cells than an iCE40 UP5K has."""

    def __init__(self, words: int):
        self.words = words
        super().__init__({"a": In(8), "y": Out(8)})

    def elaborate(self, platform):
        m = Module()
        regs = [Signal(32, name=f"r{i}") for i in range(self.words)]
        for i, r in enumerate(regs):
            m.d.sync += r.eq(regs[i - 1] ^ regs[i - 2].rotate_left(3) ^ regs[i - 3] ^ self.a)
        m.d.comb += self.y.eq(regs[-1][0:8])
        return m


def test_a_design_past_the_device_stops_before_place_and_route(tmp_path):
    """Packing tells the design needs more logic cells than the device has: one clear
    error, with the counts, and no placement attempted."""
    with pytest.raises(SynthError, match=r"needs [\d,]+ logic cells and the ice40 device "
                                         r"has 5,280; --no-pnr"):
        synthesize_design(XorBank(200), "ice40", tmp_path)
    assert (tmp_path / "pack.log").exists() and not (tmp_path / "nextpnr.log").exists()


def test_packed_logic_cells_count_what_carry_chains_cost(tmp_path):
    """nextpnr packs a carry chain into more logic cells than yosys's LUT sites: the
    report's `luts` are the packed cells, which is what must fit."""
    from rtl.synth import packed_logic

    report = synthesize_design(MacCounter(), "ecp5", tmp_path, place=False)
    pack = json.loads((tmp_path / "pack.json").read_text())
    assert packed_logic(pack, "ecp5") == (report.luts, report.device_luts)
    stat = count_cells(json.loads((tmp_path / "stat.json").read_text()), "ecp5")
    assert report.luts > stat["luts"] > 0 and report.device_luts == 83_640
    with pytest.raises(SynthError, match="no TRELLIS_COMB"):
        packed_logic({"utilization": {}}, "ecp5")


def test_report_parsing():
    stat = {"design": {"num_cells_by_type": {"LUT4": 120, "TRELLIS_FF": 64, "DP16KD": 2,
                                             "MULT18X18D": 3, "CCU2C": 9}}}
    assert count_cells(stat, "ecp5") == {"luts": 120 + 2 * 9, "ffs": 64, "brams": 2, "dsps": 3,
                                         "lutram": 0}
    old_style = {"modules": {"top": {"num_cells_by_type": {"SB_LUT4": 7, "SB_DFFE": 2,
                                                            "SB_DFF": 1}}}}
    assert count_cells(old_style, "ice40")["ffs"] == 3
    report = {"fmax": {"clk": {"achieved": 143.2, "constraint": 100.0},
                       "clk2": {"achieved": 99.5, "constraint": 50.0}}}
    assert parse_fmax(report) == pytest.approx(99.5)
    assert parse_fmax({}) is None


def test_a_faster_speed_grade_times_the_same_placement_faster(tmp_path):
    """`speed` reaches nextpnr's timing model: the same design and seed on an ECP5 of
    speed grade 8 closes at a higher Fmax than on the slowest grade, 6 (the default)."""
    fmax = {}
    for grade in (None, 8):
        report = synthesize_design(MacCounter(), "ecp5", tmp_path / str(grade),
                                   freq_mhz=50.0, seed=3, speed=grade)
        assert report.speed == (grade or 6)
        fmax[grade] = report.fmax_mhz
    assert fmax[8] > 1.1 * fmax[None]


@pytest.mark.parametrize(("target", "speed", "message"), [
    ("ecp5", 9, "ecp5 speed grade must be one of 6, 7, 8, got 9"),
    ("ice40", 8, "ice40 has no speed grades to choose from"),
])
def test_a_speed_grade_the_device_lacks_is_refused_before_the_tools(tmp_path, target, speed,
                                                                    message):
    with pytest.raises(SynthError, match=message):
        synthesize_design(MacCounter(), target, tmp_path, speed=speed)
    assert not any(tmp_path.iterdir())


def test_unknown_target_is_a_clear_error(tmp_path):
    with pytest.raises(SynthError, match="unknown target"):
        synthesize_design(MacCounter(), "xc7", tmp_path)


def test_sram_fit_counts_block_rams_and_refuses_before_the_tools():
    from isa.config import PRESETS, ChipConfig
    from isa.table import Mem
    from rtl.synth import TWO_PORT_BRAMS, bram_blocks, check_fits, sram_layout

    shapes = TWO_PORT_BRAMS["ecp5"][1]
    assert bram_blocks(4096, 512, shapes) == 114  # 2K x 9: 2 deep, 57 wide
    assert bram_blocks(1024, 512, shapes) == 29  # 1K x 18
    # Where the blocks are there, SP goes in 4-bit slices one block deep (4K x 4): no
    # multiplexer after two cascaded blocks.
    assert sram_layout(PRESETS["default"], "ecp5") == ({Mem.SP: 4, Mem.ACC: 18}, 128 + 29)
    check_fits(PRESETS["default"], "ecp5")  # 157 + the transposer's 16 of the 85F's 208
    big = ChipConfig(name="big", sp_bytes=512 * 1024)
    with pytest.raises(SynthError, match="need 257 block RAMs and its transposer 16, and the "
                                         "device has 208"):
        check_fits(big, "ecp5")
    # SP and ACC alone would fit (171 + 29); the transposer's memories do not.
    with pytest.raises(SynthError, match="need 200 block RAMs and its transposer 16"):
        check_fits(ChipConfig(name="near", sp_bytes=384 * 1024), "ecp5")
    with pytest.raises(SynthError, match="built from flip-flops"):
        check_fits(PRESETS["default"], "ice40")


def test_arrival_estimates_rank_a_multiply_accumulate_above_a_shift(tmp_path, capsys):
    """The accumulator (a DSP product, then a carry chain) settles later than the shift
    register beside it (one LUT); the latest path into it leads back to a register."""
    from frontend.cli import main
    from rtl.arrival import CLOCK_TO_Q_NS, Netlist
    from rtl.synth import synthesize_netlist

    work = synthesize_netlist(MacCounter(), "ecp5", tmp_path)
    netlist = Netlist(work / "top.json")
    ends = netlist.endpoints()
    assert [e.ns for e in ends] == sorted((e.ns for e in ends), reverse=True)
    acc = max(e.ns for e in ends if e.name.startswith("acc"))
    mix = max(e.ns for e in ends if e.name.startswith("mix"))
    assert acc > mix + 2.0
    into = next(c for c, cell in netlist.cells.items()
                if c.startswith("acc") and cell["type"] == "TRELLIS_FF")
    path = netlist.path_to(into)
    assert path[0][0] <= acc and path[-1][1] in (*CLOCK_TO_Q_NS, "MULT18X18D")

    assert main(["rtl", "paths", str(work / "top.json"), "--top", "3", "--trace", "acc"]) == 0
    out = capsys.readouterr().out
    assert "slowest endpoints" in out and "latest path into acc" in out
    assert main(["rtl", "paths", str(work / "top.il")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a yosys JSON netlist" in err


def test_placement_alone_gives_nextpnrs_estimate_and_the_placed_paths(tmp_path, capsys):
    """`route=False` stops after placement: nextpnr's Fmax then, and the slowest path timed
    over its placed netlist, which `dozen rtl paths` reads too."""
    from frontend.cli import main
    from rtl.arrival import PlacedNetlist

    report = synthesize_design(MacCounter(), "ecp5", tmp_path, freq_mhz=50.0, seed=3,
                               route=False)
    assert report.routed is False and report.to_dict()["routed"] is False
    assert report.fmax_mhz is not None and report.fmax_mhz > 0
    path = report.critical_path
    assert path is not None and path.cells >= 1 and path.routing_ns > 0
    placed = tmp_path / "placed.json"
    assert PlacedNetlist.is_placed(placed) and not PlacedNetlist.is_placed(tmp_path / "top.json")
    netlist = PlacedNetlist(placed)
    worst = netlist.endpoints()[0]
    assert worst.ns == pytest.approx(path.logic_ns + path.routing_ns)
    assert worst.name.startswith("acc")  # the DSP product and its carry chain
    assert main(["rtl", "paths", str(placed), "--top", "2"]) == 0
    assert "slowest endpoints" in capsys.readouterr().out


def _placed(cells: dict) -> dict:
    """A placed netlist by hand: name -> (type, site, {port: (direction, bits)})."""
    return {"modules": {"top": {"cells": {
        name: {"type": kind, "attributes": {"NEXTPNR_BEL": f"X{x}/Y{y}/SLICEA"},
               "port_directions": {p: d for p, (d, _) in ports.items()},
               "connections": {p: bits for p, (_, bits) in ports.items()}}
        for name, (kind, (x, y), ports) in cells.items()}}}}


def test_placed_connections_cost_their_distance_as_nextpnrs_placer_counts_it(tmp_path):
    """A register, a LUT four tiles off, a carry link and a flip-flop in the LUT's slice:
    the LUT's input waits for the distance (3 units, + 2 a tile of the first five, + 1 a
    tile beyond); the carry link and the slice's own flip-flop cost nothing."""
    from rtl.arrival import UNIT_PS, PlacedNetlist, connection_ns

    unit = UNIT_PS / 1000
    assert connection_ns((0, 0), (0, 0)) == pytest.approx(3 * unit)
    assert connection_ns((0, 0), (4, 0)) == pytest.approx(unit * 11)
    assert connection_ns((0, 0), (9, 2)) == pytest.approx(unit * (3 + 4 + 10 + 4))
    path = tmp_path / "placed.json"
    path.write_text(json.dumps(_placed({
        "q": ("TRELLIS_FF", (0, 0), {"Q": ("output", [2]), "DI": ("input", [9])}),
        "lut": ("TRELLIS_COMB", (4, 0), {"A": ("input", [2]), "F": ("output", [3]),
                                         "FCO": ("output", [4])}),
        "next": ("TRELLIS_COMB", (4, 0), {"FCI": ("input", [4]), "F": ("output", [5])}),
        "d": ("TRELLIS_FF", (4, 0), {"DI": ("input", [5]), "Q": ("output", [9])}),
    })))
    netlist = PlacedNetlist(path)
    assert netlist.arrival(3) == pytest.approx(0.5 + unit * 11 + 0.24)
    assert netlist.arrival(5) == pytest.approx(0.5 + unit * 11 + 0.24 + 0.24)
    assert netlist.endpoints()[0].name == "d.DI"
    start, end, logic, routing, cells = netlist.critical()
    assert (start, end, cells) == ("q", "d.DI", 2)
    assert logic + routing == pytest.approx(netlist.arrival(5))


class FanOut(wiring.Component):
    """A control register that 64 flip-flops' logic reads, in `copies` replicas."""

    def __init__(self, copies: int):
        self.copies = copies
        super().__init__({"a": In(1), "x": In(64), "y": Out(64)})

    def elaborate(self, platform):
        from rtl.lanes import copies

        m = Module()
        ctl = copies(m, self.a, "ctl", self.copies)
        m.d.sync += [self.y[i].eq(self.x[i] ^ ctl[i * self.copies // 64]) for i in range(64)]
        return m


@pytest.mark.parametrize("count", [1, 4])
def test_replicated_registers_survive_synthesis_and_share_the_loads(tmp_path, capsys, count):
    """yosys merges registers of one D input; the replicas stay apart, each reaching its
    share of the 64 loads, and `paths --fanout` lists them busiest first."""
    from frontend.cli import main
    from rtl.arrival import Netlist
    from rtl.synth import synthesize_netlist

    work = synthesize_netlist(FanOut(count), "ecp5", tmp_path)
    ctl = [(loads, name) for loads, name in Netlist(work / "top.json").fanouts()
           if name.startswith("ctl")]
    assert len(ctl) == count and {loads for loads, _ in ctl} == {64 // count}
    assert main(["rtl", "paths", str(work / "top.json"), "--top", "1", "--fanout", "2"]) == 0
    rows = capsys.readouterr().out.split("registers with the most loads")[1].splitlines()
    assert f"{64 // count}" in rows[3] and "ctl_r" in rows[3]


LOADS_BEFORE_THE_ENABLE_BUFFER = 50  # 47 on this core (62 with read-back copies)


def test_paths_of_a_config_maps_its_core_first(tmp_path, capsys):
    """...and the clock enable, which every register of the core waits for, reaches its
    global buffer a few LUTs from flip-flops: the SRAM schedule is worked out a cycle
    ahead and the start decisions only choose (eight LUTs when it was not)."""
    from frontend.cli import main

    toml = tmp_path / "small.toml"
    toml.write_text('name = "small"\nn = 4\nsp_bytes = 128\nacc_bytes = 64\n'
                    'dram_bytes = 65536\n')
    assert main(["rtl", "paths", "--config", str(toml), "--workdir", str(tmp_path / "w"),
                 "--top", "5", "--trace", "core.enable_dcca"]) == 0
    out = capsys.readouterr().out
    assert "slowest endpoints" in out and "core.logic" in out
    assert (tmp_path / "w" / "top.json").is_file()
    path = out.split("latest path into core.enable_dcca")[1].splitlines()
    cells = [line.split()[1] for line in path if re.match(r"\s*\d+\.\d+\s", line)]
    assert cells[-1] == "TRELLIS_FF" and set(cells[:-1]) == {"LUT4"}
    assert len(cells) - 1 <= 5, path
    # The enable's own net, before its global buffer, reaches few cells: each one more
    # spreads the logic the whole core waits for (copies of the SRAM read-back's registers,
    # one a lane, took it from 47 to 110 cells on the default core, 62 on this one).
    from rtl.arrival import Netlist

    netlist = Netlist(tmp_path / "w" / "top.json")
    dcca = netlist.cells["core.enable_dcca"]["connections"]["CLKI"][0]
    assert netlist.loads(dcca) <= LOADS_BEFORE_THE_ENABLE_BUFFER


class TwoPortRam(wiring.Component):
    """Two read/write ports, each transparent to the other's writes (as `SramArbiter`
    builds SP and ACC), the memory optionally marked `COLLISIONS_UNDEFINED`."""

    def __init__(self, marked: bool):
        self.marked = marked
        super().__init__({"addr": In(8).array(2), "wen": In(1).array(2), "wdata": In(18).array(2),
                          "rdata": Out(18).array(2)})

    def elaborate(self, platform):
        from amaranth.lib.memory import Memory

        from rtl.sram import COLLISIONS_UNDEFINED

        m = Module()
        attrs = {COLLISIONS_UNDEFINED: 1} if self.marked else {}
        m.submodules.ram = ram = Memory(shape=18, depth=256, init=[], attrs=attrs)
        writes = [ram.write_port() for _ in range(2)]
        for j, wp in enumerate(writes):
            rp = ram.read_port(transparent_for=[w for w in writes if w is not wp])
            m.d.comb += [wp.addr.eq(self.addr[j]), rp.addr.eq(self.addr[j]),
                         wp.en.eq(self.wen[j]), wp.data.eq(self.wdata[j]),
                         self.rdata[j].eq(rp.data)]
        return m


def test_memories_with_undefined_collisions_synthesise_without_bypass_logic(tmp_path):
    """The RTLIL rewrite touches only the marked memory's read ports, and yosys then
    builds its ports with no transparency logic: fewer LUTs and flip-flops."""
    from amaranth.back import rtlil

    from rtl.synth import undefined_collisions

    def masks(text):
        return [line.split()[-1] for line in text.splitlines() if "_MASK " in line
                and ("TRANSPARENCY" in line or "COLLISION_X" in line)]

    plain = rtlil.convert(TwoPortRam(marked=False), name="top", emit_src=False)
    assert undefined_collisions(plain) == plain
    marked = undefined_collisions(rtlil.convert(TwoPortRam(marked=True), name="top",
                                                emit_src=False))
    assert sorted(masks(marked)) == ["2'00", "2'00", "2'11", "2'11"]

    counts = {}
    for flag in (False, True):
        report = synthesize_design(TwoPortRam(marked=flag), "ecp5", tmp_path / str(flag),
                                   place=False)
        counts[flag] = (report.luts, report.ffs, report.brams)
    assert counts[True][2] == counts[False][2] >= 1
    assert counts[True][0] < counts[False][0] and counts[True][1] < counts[False][1]


class EnabledBank(wiring.Component):
    """Registers held by one clock enable, as the core's are by the SRAM arbiter's, sent
    through a target's global buffer (`GLOBAL_BUFFERS`)."""

    def __init__(self, target: str):
        self.target = target
        super().__init__({"en_a": In(1), "en_b": In(1), "d": In(8), "q": Out(8)})

    def elaborate(self, platform):
        from amaranth.hdl import EnableInserter

        from rtl.synth import GLOBAL_BUFFERS

        m = Module()
        enable = GLOBAL_BUFFERS[self.target](m, "enable", self.en_a ^ self.en_b)
        bank = Module()
        regs = [Signal(8, name=f"r{i}") for i in range(16)]
        bank.d.sync += [regs[0].eq(self.d)] + [regs[i].eq(regs[i - 1] + i)
                                               for i in range(1, 16)]
        bank.d.comb += self.q.eq(regs[-1])
        m.submodules.bank = EnableInserter({"sync": enable})(bank)
        return m


def test_a_clock_enable_reaches_its_registers_through_a_global_buffer(tmp_path):
    report = synthesize_design(EnabledBank("ecp5"), "ecp5", tmp_path, freq_mhz=50.0, seed=1)
    log = (tmp_path / "nextpnr.log").read_text()
    assert re.search(r"routing clock net enable\S* using global", log)
    assert report.fmax_mhz is not None and report.ffs >= 128


def test_the_synthesised_core_sends_its_reset_and_enable_to_global_nets():
    from amaranth.hdl import Fragment

    from isa.config import PRESETS
    from rtl.core import Core

    asked = []

    def record(m, name, signal):
        asked.append(name)
        return signal

    Fragment.get(Core(PRESETS["tiny"], imem_depth=16, global_net=record), None)
    assert sorted(asked) == ["enable", "reset"]


class LateEnableBank(wiring.Component):
    """A clock enable that settles late (a parity of 32 inputs, then a global buffer) over
    registers with enables of their own, each a function of 12 inputs: a LUT4 mapping
    needs two levels for a local enable, so the global one goes either in front of them
    or after them."""

    def __init__(self):
        super().__init__({"g": In(32), "x": In(48), "d": In(8), "q": Out(64)})

    def elaborate(self, platform):
        from amaranth.hdl import EnableInserter

        from rtl.synth import GLOBAL_BUFFERS

        m = Module()
        enable = GLOBAL_BUFFERS["ecp5"](m, "enable", self.g.xor())
        bank = Module()
        regs = [Signal(8, name=f"r{i}") for i in range(8)]
        for i, reg in enumerate(regs):
            window = self.x.rotate_left(5 * i)[0:12]
            with bank.If(window.all() | (window[0:6] == i)):
                bank.d.sync += reg.eq(self.d + i)
        bank.d.comb += self.q.eq(Cat(*regs))
        m.submodules.bank = EnableInserter({"sync": enable})(bank)
        return m


@pytest.mark.parametrize("told", [True, False])
def test_abc_puts_a_late_global_enable_in_the_last_lut(tmp_path, monkeypatch, told):
    """ABC is told the global buffer's delay (`TIMING_MODELS`): every register settles one
    LUT after the enable leaves its buffer. Not told, ABC takes the buffer's output for an
    input at time zero and puts it in front of the local enables' logic."""
    from rtl import synth
    from rtl.arrival import LUT_NS, Netlist

    if not told:
        monkeypatch.setattr(synth, "TIMING_MODELS", {})
    work = synth.synthesize_netlist(LateEnableBank(), "ecp5", tmp_path)
    netlist = Netlist(work / "top.json")
    dcca = next(c for c, cell in netlist.cells.items() if cell["type"] == "DCCA")
    enable_at = netlist.arrival(netlist.cells[dcca]["connections"]["CLKO"][0])
    worst = netlist.endpoints()[0].ns
    assert (worst <= enable_at + LUT_NS + 1e-6) == told
