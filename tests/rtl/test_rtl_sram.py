# amaranth: UnusedElaboratable=no
"""The two-port SRAM arbiter against a model of the architecture's many-port SRAMs.

Random race-free cycles of up to four reads and two writes over both memories (no row is
read and written in one cycle), each read given by its unit as a start's request or as a
running one: every read must return the row as the cycles before left
it and hold it for the whole next cycle however many clocks that takes; `ce` must rise
exactly in each cycle's last clock, after as many clocks as the busiest RAM port (each
request has a fixed one) has requests.
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from isa.config import PRESETS
from rtl.sram import CHANNEL_PORT, PORTS, READ_UNIT, READS, WRITES, SramArbiter

TINY = PRESETS["tiny"]


def _random_cycle(rng: np.random.Generator, rows: dict[int, int], width: int) -> dict:
    reads = [(bool(rng.random() < 0.7), int(rng.integers(2)), 0) for _ in range(READS)]
    reads = [(en, mem, int(rng.integers(rows[mem]))) for en, mem, _ in reads]
    writes, taken = [], {(mem, row) for en, mem, row in reads if en}
    for _ in range(WRITES):
        mem = int(rng.integers(2))
        row = int(rng.integers(rows[mem]))
        en = bool(rng.random() < 0.6) and (mem, row) not in taken
        taken.add((mem, row))
        writes.append((en, mem, row, int.from_bytes(rng.bytes(width // 8), "little")))
    # Whether each read channel's unit starts this cycle (the channels of a unit together):
    # the request then comes on go_en/go_mem, and a decoy on en/mem (the other way round
    # when it does not start), so the arbiter must follow `go` to serve the right one.
    go = [bool(rng.random() < 0.4) for _ in range(max(READ_UNIT) + 1)]
    decoys = [(bool(rng.random() < 0.5), int(rng.integers(2))) for _ in range(READS)]
    return {"reads": reads, "writes": writes, "go": [go[u] for u in READ_UNIT],
            "decoys": decoys}


def test_arbiter_matches_a_many_port_memory():
    cfg = TINY
    arb = SramArbiter(cfg)
    rows = {0: cfg.sp_rows, 1: cfg.acc_rows}
    width = len(arb.wr[0].data)
    rng = np.random.default_rng(7)
    cycles = [_random_cycle(rng, rows, width) for _ in range(300)]
    # A run begins with no requests (the SRAM clear), so the first cycle's schedule, worked
    # out a cycle ahead, is the reset one: no conflict.
    cycles.insert(0, {"reads": [(False, 0, 0)] * READS, "go": [False] * READS,
                      "decoys": [(False, 0)] * READS,
                      "writes": [(False, 0, 0, 0)] * WRITES})
    model = {0: [0] * rows[0], 1: [0] * rows[1]}
    seen: dict[str, int] = {"clocks": 0, "expected_stalls": 0}

    def drive(ctx, cyc, prefix=""):
        """A cycle's requests on the channels' members (`next_`: a cycle ahead)."""
        for c, (en, mem, _) in enumerate(cyc["reads"]):
            go, (decoy_en, decoy_mem) = cyc["go"][c], cyc["decoys"][c]
            ctx.set(getattr(arb.rd[c], f"{prefix}go_en"), en if go else decoy_en)
            ctx.set(getattr(arb.rd[c], f"{prefix}go_mem"), mem if go else decoy_mem)
            ctx.set(getattr(arb.rd[c], f"{prefix}en"), decoy_en if go else en)
            ctx.set(getattr(arb.rd[c], f"{prefix}mem"), decoy_mem if go else mem)
        for w, (en, mem, *_) in enumerate(cyc["writes"]):
            ctx.set(getattr(arb.wr[w], f"{prefix}en"), en)
            ctx.set(getattr(arb.wr[w], f"{prefix}mem"), mem)

    async def bench(ctx):
        ctx.set(arb.count, 1)
        expected: list[int | None] = [None] * READS  # what each channel must show now
        for i, cyc in enumerate(cycles):
            drive(ctx, cyc)
            drive(ctx, cycles[(i + 1) % len(cycles)], "next_")
            for c, (_, _, row) in enumerate(cyc["reads"]):
                ctx.set(arb.rd[c].go, cyc["go"][c])
                ctx.set(arb.rd[c].row, row)
            for w, (_, _, row, data) in enumerate(cyc["writes"]):
                ctx.set(arb.wr[w].row, row)
                ctx.set(arb.wr[w].data, data)
            requests = cyc["reads"] + cyc["writes"]
            per_port = [sum(en and m == mem and CHANNEL_PORT[i] == port
                            for i, (en, m, *_) in enumerate(requests))
                        for mem in (0, 1) for port in range(PORTS)]
            clocks = max(1, *per_port)
            seen["expected_stalls"] += clocks - 1
            for clock in range(clocks):
                for c, want in enumerate(expected):
                    if want is not None:
                        assert ctx.get(arb.rd[c].data) == want, (c, clock)
                assert ctx.get(arb.ce) == (clock == clocks - 1), (clock, clocks)
                await ctx.tick()
                seen["clocks"] += 1
            expected = [model[mem][row] if en else None for en, mem, row in cyc["reads"]]
            for en, mem, row, data in cyc["writes"]:
                if en:
                    model[mem][row] = data
        assert ctx.get(arb.stall_clocks) == seen["expected_stalls"]

    sim = Simulator(arb)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["expected_stalls"] > 50  # the random cycles did conflict, often
    assert seen["clocks"] == len(cycles) + seen["expected_stalls"]


def test_clear_writes_zero_rows_in_both_memories():
    cfg = TINY
    arb = SramArbiter(cfg)

    async def bench(ctx):
        for mem, row in ((0, 3), (1, 3)):  # a row in each memory, then clear row 3
            ctx.set(arb.wr[0].en, 1)
            ctx.set(arb.wr[0].mem, mem)
            ctx.set(arb.wr[0].row, row)
            ctx.set(arb.wr[0].data, 0xABC)
            await ctx.tick()
        ctx.set(arb.wr[0].en, 0)
        ctx.set(arb.clear_en, 1)
        ctx.set(arb.clear_row, 3)
        await ctx.tick()
        ctx.set(arb.clear_en, 0)
        for mem in (0, 1):
            ctx.set(arb.rd[0].en, 1)
            ctx.set(arb.rd[0].mem, mem)
            ctx.set(arb.rd[0].row, 3)
            await ctx.tick()
            ctx.set(arb.rd[0].en, 0)
            assert ctx.get(arb.rd[0].data) == 0

    sim = Simulator(arb)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
