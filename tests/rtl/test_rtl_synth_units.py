# amaranth: UnusedElaboratable=no
"""Unit synthesis: the predecoder agrees with the ISA table; critical paths parse; the CLI.

Place & route of the units takes tens of seconds each, so their Fmax figures come from
`dozen rtl synth --unit NAME`, not from tests.
"""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from frontend.cli import main
from isa.config import PRESETS
from isa.encoding import encode, make
from isa.table import BY_OPCODE, FUNC_DTYPES, TOKEN_FLAGS, Fmt, Kind, MoveFn, Op, Unit, esize
from rtl.fields import Predecoder
from rtl.support import matmul_supported, supported
from rtl.synth import parse_critical_path


def _random_instruction(rng: random.Random, op):
    values = {}
    for f in op.fields:
        if f.kind is Kind.ENUM:
            values[f.name] = int(rng.choice(list(f.enum)))
        elif f.kind is Kind.LOCAL:
            values[f.name] = rng.randrange(2 << 16)
        else:
            values[f.name] = rng.randint(f.lo, min(f.hi, f.lo + rng.choice([3, 40, 1 << 20])))
    table = FUNC_DTYPES.get(op.mnemonic)
    if table is not None:
        fn = op.field("fn").enum(values["fn"])
        values["dtype"] = int(rng.choice(sorted(table[fn])))
    flags = ()
    if op.unit is not Unit.DISPATCH and op.opcode != Op.SYNC:
        flags = tuple(f for f in TOKEN_FLAGS if rng.random() < 0.3)
    try:
        return make(op.mnemonic, flags, **values)
    except Exception:  # a flag the unit has no neighbour for: drop the flags
        return make(op.mnemonic, (), **values)


def _expected(insn, cfg):
    op = insn.op
    legal = True
    table = FUNC_DTYPES.get(op.mnemonic)
    if table is not None:
        legal = supported(op, op.field("fn").enum(insn["fn"]), insn["dtype"])
    if op.opcode == Op.MATMUL:
        legal = matmul_supported(insn["dtype"])
    if op.opcode == Op.MOVE and insn["fn"] == MoveFn.BCAST:
        legal = legal and insn["imm"] < cfg.n
    latency = op.cycles(insn.values, cfg) if op.unit is not Unit.DISPATCH else None
    dram = None  # a DMA's DRAM range: (first byte, one past the last minus the DRAM's size)
    if op.opcode in (Op.LOAD, Op.STORE):
        extent = (insn["rows"] - 1) * insn["stride"] + insn["cols"] * esize(Fmt(insn["fmt"]))
        dram = (insn["dram"], insn["dram"] + extent - cfg.dram_bytes)
    return latency, legal, dram


def test_predecoder_agrees_with_the_table_on_random_instructions():
    cfg = PRESETS["tiny"]
    rng = random.Random(5)
    cases = [_random_instruction(rng, op) for op in BY_OPCODE.values() for _ in range(12)]
    dut = Predecoder(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = []

    async def bench(ctx):
        # One word a clock, as code loads; each comes out DEPTH clocks later, in order.
        words = [int.from_bytes(encode(insn), "little") for insn in cases]
        for clock in range(len(words) + Predecoder.DEPTH + 2):
            if clock < len(words):
                ctx.set(dut.en, 1)
                ctx.set(dut.addr, clock)
                ctx.set(dut.word, words[clock])
            else:
                ctx.set(dut.en, 0)
                ctx.set(dut.word, 0)
            assert ctx.get(dut.busy) == (0 < clock < len(words) + Predecoder.DEPTH)
            if ctx.get(dut.wr_en):
                index = len(seen)
                assert clock == index + Predecoder.DEPTH
                assert (ctx.get(dut.wr_addr), ctx.get(dut.wr_word)) == (index, words[index])
                out = dut.out
                seen.append((ctx.get(out.latency), ctx.get(out.legal),
                             (ctx.get(out.span_low[1]), ctx.get(out.span_high[1]))))
            await ctx.tick()
        assert len(seen) == len(words)

    sim.add_testbench(bench)
    sim.run()
    for insn, (latency, legal, dram) in zip(cases, seen, strict=True):
        want_latency, want_legal, want_dram = _expected(insn, cfg)
        assert bool(legal) == want_legal, insn
        if want_latency is not None:
            assert latency == want_latency, insn
        if want_dram is not None:  # the DMA's second range is its DRAM one
            assert dram == want_dram, insn


def test_critical_path_parsing():
    step = {"from": {"cell": "a", "port": "Q"}, "to": {"cell": "m", "port": "A0"}}
    report = {"critical_paths": [
        {"path": [{**step, "type": "clk-to-q", "delay": 0.5},
                  {**step, "type": "routing", "delay": 1.5},
                  {"from": {"cell": "m", "port": "P"}, "to": {"cell": "b", "port": "DI"},
                   "type": "logic", "delay": 4.0}]},
        {"path": [{**step, "type": "logic", "delay": 1.0}]},
    ]}
    path = parse_critical_path(report)
    assert path is not None and path.start == "a.Q" and path.end == "b.DI"
    assert (path.logic_ns, path.routing_ns, path.cells) == (4.5, 1.5, 1)
    assert "6.0 ns" in path.describe()
    assert parse_critical_path({}) is None


def test_unknown_unit_is_one_clear_line(capsys):
    assert main(["rtl", "synth", "--unit", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown unit" in err and "requant" in err


def test_every_unit_elaborates_behind_its_pins():
    """Each part `dozen rtl synth --unit` offers builds into Verilog behind `UnitPins`
    (the whole compute unit aside: it is the slow one, and the core's tests build it)."""
    from amaranth.back import verilog

    from rtl.synth_units import UNITS, UnitPins

    for name, (build, _) in UNITS.items():
        if name != "compute":
            assert "module top" in verilog.convert(UnitPins(build(PRESETS["tiny"])), name="top")
