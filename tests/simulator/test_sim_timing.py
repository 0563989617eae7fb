"""Cycle-exact timing: hand-computed schedules (isa/model.py TIMING), every latency formula,
and the event schedule against a naive per-cycle model on random programs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_helpers import ACC, HALT, SP, TIMING, run

from isa.encoding import make
from isa.table import Axis, BinaryFn, DType, Fault, Fmt, MoveFn, SyncUnit
from simulator import SimulationError
from simulator.semantics import Machine
from simulator.ticking import run_ticks
from simulator.timing import dispatch_count


def runs(result):
    return [(u, s, e, pc) for u, s, e, pc, _ in result.log.runs]


def load(rows=4, cols=4, fmt=Fmt.I8, flags=(), sram=0, dram=0):
    return make("load", flags, sram=SP(sram), dram=dram, stride=cols * 4, rows=rows, cols=cols,
                fmt=fmt)


def test_lone_halt_takes_one_cycle():
    assert run([HALT]).cycles == 1


def test_load_of_latency_8_at_cycle_0_starts_at_1_and_completes_at_9():
    r = run([load(rows=4, cols=4), HALT], trace=True)  # 4 + ceil(16 / 4) = 8
    assert runs(r) == [(0, 1, 9, 0)]
    assert r.cycles == 9
    assert r.counters.busy[0] == 8 and r.counters.halt_cycle == 1


def test_same_unit_runs_in_order_back_to_back():
    r = run([load(), load(sram=4), HALT], trace=True)
    assert runs(r) == [(0, 1, 9, 0), (0, 9, 17, 1)]
    assert r.cycles == 17


def test_independent_units_overlap():
    mm = make("matmul", dst=0, inp=8, wgt=0, rows=4)  # 4 + 4 + 5 = 13
    r = run([load(), mm, HALT], trace=True)
    assert runs(r) == [(0, 1, 9, 0), (1, 2, 15, 1)]
    assert r.cycles == 15


def test_token_wait_pushes_complete_before_starts():
    mm = make("matmul", ("pop_prev",), dst=0, inp=0, wgt=0, rows=4)
    r = run([load(flags=("push_next",)), mm, HALT], trace=True)
    # The push lands at 9 (step 1) and the matmul starts in the same cycle (step 2).
    assert runs(r) == [(0, 1, 9, 0), (1, 9, 22, 1)]  # 4 + 4 + 5 = 13
    assert r.counters.stalled[1] == 7  # tried at 2..8
    assert r.cycles == 22
    assert [w[:3] for w in r.log.waits] == [(1, 2, 9)]


def test_queue_full_stalls_the_dispatcher():
    # queue_depth = 2: l0 starts at 1; l1, l2 wait in the queue; l3 waits for room until 9.
    r = run([load(), load(), load(), load(), HALT], trace=True)
    assert runs(r) == [(0, 1, 9, 0), (0, 9, 17, 1), (0, 17, 25, 2), (0, 25, 33, 3)]
    assert r.counters.dispatch_stalled == 6  # cycles 3..8
    assert r.counters.halt_cycle == 10
    assert r.cycles == 33
    assert r.log.stalls == [(3, 9, 3)]


def test_queue_room_is_counted_after_starts():
    # At cycle 9 l1 leaves the queue (step 2), so l3 enters it in the same cycle (step 3).
    r = run([load(), load(), load(), load(), HALT], trace=True)
    assert r.log.stalls[0][1] == 9


def test_halt_waits_for_the_units_to_drain():
    r = run([make("sync", unit=SyncUnit.STORE), HALT])
    assert r.cycles == 2  # sync: dispatched 0, runs 1..2; halt dispatched at 1


def test_loop_costs_one_dispatch_cycle_and_back_edges_are_free():
    body = make("sync", unit=SyncUnit.COMPUTE)
    r = run([make("loop", count=3, body=1), body, HALT], trace=True)
    assert runs(r) == [(1, 2, 3, 1), (1, 3, 4, 1), (1, 4, 5, 1)]
    assert r.counters.halt_cycle == 4 and r.cycles == 5
    assert r.counters.by_opcode == {"loop": 1, "sync": 3, "halt": 1}


def test_loop_offsets_move_addresses_and_nest():
    inner = make("loop", count=2, body=1, d_dst=1)
    outer = make("loop", count=2, body=2, d_dst=10, d_dram=100)
    ld = make("load", sram=SP(0), dram=0, stride=4, rows=1, cols=4, fmt=Fmt.I8)
    r = run([outer, inner, ld, HALT], trace=True)
    got = [(v["sram"] & 0xFFFF, v["dram"]) for *_, v in r.log.runs]
    assert got == [(0, 0), (1, 0), (10, 100), (11, 100)]


LATENCIES = [  # (instruction, hand-computed latency on TIMING: n=4, dram 4 + ceil(bytes/4))
    (make("load", sram=SP(0), dram=0, stride=16, rows=3, cols=4, fmt=Fmt.X32), 4 + 12),
    (make("load", sram=SP(0), dram=0, stride=3, rows=1, cols=3, fmt=Fmt.I8), 4 + 1),
    (make("store", sram=ACC(0), dram=0, stride=16, rows=2, cols=4, fmt=Fmt.X32), 4 + 8),
    (make("store", sram=ACC(0), dram=0, stride=4, rows=5, cols=4, fmt=Fmt.U8), 4 + 5),
    (make("matmul", dst=0, inp=0, wgt=0, rows=5), 4 + 5 + 5),  # weights, rows, 4 stages + 1
    (make("unary", dst=SP(0), src1=SP(0), count=3), 3 + 6),  # rows, read + 5 stages + write
    (make("binary", dst=SP(0), src1=SP(0), src2=SP(0), count=1), 1 + 6),
    (make("ternary", dst=SP(0), src1=SP(0), src2=SP(0), src3=SP(0), count=2), 2 + 6),
    # over lanes: read, a stage per tree level (log2 4 = 2), two for the acc combine, write
    (make("reduce", dst=SP(9), src1=SP(0), count=2, axis=Axis.LANES), 2 + 2 + 3),
    (make("reduce", dst=SP(9), src1=SP(0), count=2, axis=Axis.ROWS), 2 + 6),
    (make("requant", dst=SP(9), src1=SP(0), src2=SP(4), count=1), 1 + 6),
    (make("requant", dst=SP(9), src1=SP(0), src2=SP(4), count=2, step2=1), 2 + 6),
    (make("move", dst=SP(8), src1=SP(0), count=3, fn=MoveFn.COPY, dstride=1, sstride=1), 3 + 6),
    (make("move", dst=SP(16), src1=SP(0), count=2, fn=MoveFn.TRANSPOSE, dstride=4, sstride=4),
     2 * 4 + 4 + 5),  # a block of drain, the transposer's block RAMs
    (make("binary", dst=SP(0), src1=SP(0), src2=SP(0), count=2, fn=BinaryFn.DIV,
          dtype=DType.I32), 2 * 4 * 32 + 5),  # an iterative divider for the four lanes
    (make("move", dst=SP(8), count=2, fn=MoveFn.FILL, dstride=1), 2 + 6),
    (make("sync", unit=SyncUnit.LOAD), 1),
]


@pytest.mark.parametrize("insn,latency", LATENCIES, ids=lambda x: getattr(x, "mnemonic", ""))
def test_each_latency_formula(insn, latency):
    r = run([insn, HALT], trace=True)
    assert runs(r)[0][1:3] == (1, 1 + latency)
    assert r.cycles == 1 + latency
    assert insn.op.cycles(insn.values, TIMING) == latency


def test_latency_formulas_on_the_default_config():
    from isa.config import PRESETS
    cfg = PRESETS["default"]
    a = make("load", sram=SP(0), dram=0, stride=1024, rows=512, cols=16, fmt=Fmt.I8)
    assert a.op.cycles(a.values, cfg) == 64 + 256
    mm = make("matmul", dst=0, inp=0, wgt=0, rows=512)
    assert mm.op.cycles(mm.values, cfg) == 16 + 512 + 5
    red = make("reduce", dst=SP(0), src1=SP(0), count=1, axis=Axis.LANES)
    assert red.op.cycles(red.values, cfg) == 1 + 4 + 3  # log2 16 tree levels, read, acc, write


# Differential: the event schedule against the per-cycle model -----------------------------

_UNIT_FLAGS = {0: ("pop_next", "push_next"), 1: ("pop_prev", "pop_next", "push_prev", "push_next"),
               2: ("pop_prev", "push_prev")}


@st.composite
def _insn(draw):
    kind = draw(st.sampled_from(["load", "store", "matmul", "unary", "sync", "sync", "loop"]))
    if kind == "loop":
        return make("loop", count=draw(st.integers(1, 3)), body=draw(st.integers(1, 3)),
                    d_dst=draw(st.integers(-1, 2)), d_dram=draw(st.integers(0, 8)))
    unit = {"load": 0, "store": 2, "matmul": 1, "unary": 1}.get(kind)
    if kind == "sync":
        unit = draw(st.integers(0, 2))
    flags = draw(st.sets(st.sampled_from(_UNIT_FLAGS[unit]), max_size=2)) if draw(
        st.booleans()) else set()
    rows = draw(st.integers(1, 6))
    if kind in ("load", "store"):
        return make(kind, tuple(flags), sram=SP(draw(st.integers(0, 8))), dram=draw(
            st.integers(0, 64)), stride=4, rows=rows, cols=draw(st.integers(1, 4)), fmt=Fmt.U8)
    if kind == "matmul":
        return make("matmul", tuple(flags), dst=draw(st.integers(0, 8)), inp=0, wgt=4, rows=rows)
    if kind == "unary":
        return make("unary", tuple(flags), dst=SP(draw(st.integers(0, 8))), src1=SP(0),
                    count=rows)
    return make("sync", tuple(flags), unit=unit)


programs = st.one_of(*[st.lists(_insn(), min_size=0, max_size=14).map(lambda c: c + [HALT])] * 3,
                     st.lists(_insn(), min_size=1, max_size=8))


@st.composite
def pipelines(draw):
    """Race-free load -> compute -> store pipelines with double buffers: always finish."""
    code = [make("sync", ("push_prev",), unit=SyncUnit.COMPUTE)] * 2
    code += [make("sync", ("push_prev",), unit=SyncUnit.STORE)] * 2
    for i in range(draw(st.integers(1, 6))):
        code.append(make("load", ("pop_next", "push_next"), sram=SP(8 * (i % 2)), dram=0,
                         stride=4, rows=draw(st.integers(1, 8)), cols=4, fmt=Fmt.U8))
        code.append(make("matmul", ("pop_prev", "push_prev", "pop_next", "push_next"),
                         dst=8 * (i % 2), inp=8 * (i % 2), wgt=0, rows=draw(st.integers(1, 8))))
        code.append(make("store", ("pop_prev", "push_prev"), sram=ACC(8 * (i % 2)), dram=64,
                         stride=16, rows=draw(st.integers(1, 8)), cols=4, fmt=Fmt.X32))
    return code + [HALT]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_event_schedule_equals_per_cycle_model(code):
    dram = np.random.default_rng(len(code)).integers(0, 256, TIMING.dram_bytes, dtype=np.uint8)
    ticked = Machine(TIMING, dram.copy())
    try:
        expected = run_ticks(code, TIMING, ticked, max_cycles=5000)
    except SimulationError as exc:
        with pytest.raises(SimulationError) as info:
            run(code, dram=dram.copy(), max_cycles=5000)
        assert info.value.fault == exc.fault
        return
    r = run(code, dram=dram.copy(), trace=True, max_cycles=5000)
    assert (r.cycles, runs(r)) == expected
    assert dispatch_count(code) == r.counters.instructions
    assert np.array_equal(r.dram, ticked.dram)
    assert np.array_equal(r.sp, ticked.sp) and np.array_equal(r.acc, ticked.acc)
    c = r.counters
    for u in range(3):
        assert c.busy[u] + c.stalled[u] <= c.cycles


@settings(max_examples=60, deadline=None)
@given(pipelines(), st.integers(1, 3), st.integers(2, 3), st.integers(0, 9))
def test_pipelines_match_the_per_cycle_model(code, queue_depth, token_depth, dram_latency):
    cfg = dataclasses.replace(TIMING, queue_depth=queue_depth, token_depth=token_depth,
                              dram_latency=dram_latency)
    expected = run_ticks(code, cfg)
    r = run(code, cfg, trace=True)
    assert (r.cycles, runs(r)) == expected


def test_per_cycle_model_reports_a_deadlock_too():
    code = [make("matmul", ("pop_prev",), dst=0, inp=0, wgt=0, rows=1), HALT]
    with pytest.raises(SimulationError) as info:
        run_ticks(code, TIMING)
    assert info.value.fault is Fault.DEADLOCK


def test_per_pc_counters_add_up():
    mm = make("matmul", ("pop_prev",), dst=0, inp=0, wgt=0, rows=4)
    r = run([make("loop", count=2, body=2), load(flags=("push_next",)), mm, HALT])
    c = r.counters
    assert c.issues_by_pc == [0, 2, 2, 0]
    assert sum(c.busy_by_pc) == sum(c.busy) and sum(c.stalled_by_pc) == sum(c.stalled)
