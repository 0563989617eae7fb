"""Every fault is a SimulationError naming the Fault, the pc and the instruction; never a hang,
never another exception, even for random programs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_helpers import ACC, HALT, SP, TIMING, TINY, run

from isa.encoding import Instruction, make
from isa.errors import DozenError
from isa.table import BY_MNEMONIC, OPS, DType, Fault, Fmt, Kind, MoveFn, SyncUnit, UnaryFn
from simulator import SimulationError


def fault_of(code, cfg=TIMING, **kwargs) -> SimulationError:
    with pytest.raises(SimulationError) as info:
        run(code, cfg, **kwargs)
    return info.value


def test_simulation_error_is_a_dozen_error_with_exit_code_1():
    assert issubclass(SimulationError, DozenError) and SimulationError.exit_code == 1


def test_dram_out_of_bounds_names_pc_and_instruction():
    end = TIMING.dram_bytes
    err = fault_of([make("sync", unit=SyncUnit.LOAD),
                    make("load", sram=SP(0), dram=end - 8, stride=4, rows=3, cols=4, fmt=Fmt.I8),
                    HALT])
    assert err.fault is Fault.DRAM_OUT_OF_BOUNDS and err.pc == 1
    assert "DRAM_OUT_OF_BOUNDS" in str(err) and "pc 1" in str(err) and "load" in str(err)
    assert f"{end:#x}" in str(err)


def test_store_past_dram_end():
    err = fault_of([make("store", sram=ACC(0), dram=TIMING.dram_bytes - 1, stride=4, rows=1,
                         cols=2, fmt=Fmt.U8), HALT])
    assert err.fault is Fault.DRAM_OUT_OF_BOUNDS


def test_negative_dram_address_after_loop_offsets():
    code = [make("loop", count=2, body=1, d_dram=-64),
            make("load", sram=SP(0), dram=32, stride=4, rows=1, cols=4, fmt=Fmt.U8), HALT]
    err = fault_of(code)
    assert err.fault is Fault.DRAM_OUT_OF_BOUNDS and "negative" in str(err)


@pytest.mark.parametrize("insn", [
    make("load", sram=SP(TIMING.sp_rows - 1), dram=0, stride=4, rows=2, cols=4, fmt=Fmt.U8),
    make("store", sram=ACC(TIMING.acc_rows), dram=0, stride=4, rows=1, cols=4, fmt=Fmt.U8),
    make("load", sram=SP(0), dram=0, stride=8, rows=1, cols=5, fmt=Fmt.U8),  # cols > n
    make("matmul", dst=TIMING.acc_rows - 1, inp=0, wgt=0, rows=2),
    make("matmul", dst=0, inp=0, wgt=TIMING.sp_rows - 2, rows=1),
    make("unary", dst=ACC(TIMING.acc_rows - 1), src1=SP(0), count=2, step1=1),
    make("binary", dst=SP(0), src1=SP(0), src2=ACC(TIMING.acc_rows), count=1),
    make("ternary", dst=SP(0), src1=SP(0), src2=SP(0), src3=SP(60000), count=1),
    make("reduce", dst=SP(0), src1=SP(TIMING.sp_rows - 1), count=2),
    make("requant", dst=SP(0), src1=SP(0), src2=SP(TIMING.sp_rows - 1), count=1),
    make("move", dst=ACC(0), src1=SP(TIMING.sp_rows - 2), count=1, fn=MoveFn.TRANSPOSE),
    make("move", dst=ACC(TIMING.acc_rows - 1), src1=SP(0), count=2, fn=MoveFn.COPY, dstride=1),
], ids=lambda i: i.mnemonic)
def test_sram_out_of_bounds(insn):
    err = fault_of([insn, HALT])
    assert err.fault is Fault.SRAM_OUT_OF_BOUNDS and err.pc == 0
    assert insn.mnemonic in str(err)


def test_loop_offset_below_row_zero_is_out_of_bounds():
    code = [make("loop", count=3, body=1, d_dst=-1),
            make("move", dst=SP(1), src1=SP(0), count=1, fn=MoveFn.FILL), HALT]
    err = fault_of(code)
    assert err.fault is Fault.SRAM_OUT_OF_BOUNDS and err.pc == 1


def test_illegal_instruction_bcast_lane_and_bad_dtype():
    err = fault_of([make("move", dst=SP(1), src1=SP(0), count=1, fn=MoveFn.BCAST,
                         imm=TIMING.n), HALT])
    assert err.fault is Fault.ILLEGAL_INSTRUCTION and "lane" in str(err)
    op = BY_MNEMONIC["unary"]
    values = {f.name: 0 for f in op.fields} | {"count": 1, "fn": UnaryFn.NOT,
                                                 "dtype": DType.F32}
    err = fault_of([Instruction(op, values), HALT])  # built without the encoder's check
    assert err.fault is Fault.ILLEGAL_INSTRUCTION and err.pc == 0


def test_token_overflow():
    push = make("sync", ("push_next",), unit=SyncUnit.LOAD)
    err = fault_of([push] * (TIMING.token_depth + 1) + [HALT])
    assert err.fault is Fault.TOKEN_OVERFLOW and err.pc == TIMING.token_depth
    assert "L->C" in str(err)


def test_pc_out_of_range_without_halt():
    err = fault_of([make("sync")])
    assert err.fault is Fault.PC_OUT_OF_RANGE and "pc 1" in str(err)
    assert fault_of([]).fault is Fault.PC_OUT_OF_RANGE


def test_loop_nesting_too_deep_and_body_past_the_end():
    deep = [make("loop", count=1, body=6 - i) for i in range(5)] + [make("sync"), HALT]
    err = fault_of(deep)
    assert err.fault is Fault.LOOP_NESTING and err.pc == 4
    err = fault_of([make("loop", count=2, body=3), make("sync"), HALT])
    assert err.fault is Fault.LOOP_NESTING and "past the end of the program" in str(err)
    inner_escapes = [make("loop", count=2, body=2), make("loop", count=2, body=2), make("sync"),
                     make("sync"), HALT]
    assert fault_of(inner_escapes).fault is Fault.LOOP_NESTING


def test_four_nested_loops_are_fine():
    code = [make("loop", count=2, body=4 - i) for i in range(4)] + [make("sync"), HALT]
    assert run(code).counters.by_opcode == {"loop": 15, "sync": 16, "halt": 1}


def test_deadlock_names_every_unit_and_the_instruction_it_waits_at():
    code = [make("load", ("pop_next",), sram=SP(0), dram=0, stride=4, rows=1, cols=4,
                 fmt=Fmt.U8),
            make("matmul", ("pop_prev",), dst=0, inp=0, wgt=0, rows=1), HALT]
    err = fault_of(code)
    assert err.fault is Fault.DEADLOCK
    text = str(err)
    assert "load waits at pc 0" in text and "C->L" in text
    assert "compute waits at pc 1" in text and "L->C" in text
    assert "store idle" in text and "dispatcher halted" in text


def test_deadlock_with_the_dispatcher_stalled_on_a_full_queue():
    wait = make("sync", ("pop_prev",), unit=SyncUnit.STORE)
    err = fault_of([wait] * (TIMING.queue_depth + 2) + [HALT])
    assert err.fault is Fault.DEADLOCK and "dispatcher stalled" in str(err)


def test_cycle_limit_stops_a_runaway_program_at_once():
    code = [make("loop", count=65535, body=2), make("loop", count=65535, body=1),
            make("sync"), HALT]
    err = fault_of(code)  # the default limit: known to be exceeded before running
    assert err.fault is Fault.CYCLE_LIMIT and err.cycle == 0
    assert "4,294,901,762 instructions" in str(err)


def test_cycle_limit_while_running():
    code = [make("matmul", dst=0, inp=0, wgt=0, rows=60), make("sync"), HALT]  # 4 + 60 + 2
    err = fault_of(code, max_cycles=50)
    assert err.fault is Fault.CYCLE_LIMIT and err.cycle > 50 and "50 cycles" in str(err)


# Random programs: SimulationError or success, nothing else ----------------------------------

def _field_value(draw, f, cfg):
    if f.kind is Kind.LOCAL:
        mem = draw(st.integers(0, 1))
        rows = cfg.sp_rows if mem == 0 else cfg.acc_rows
        return (mem << 16) | draw(st.integers(0, rows + 2))
    if f.kind is Kind.ENUM or f.kind is Kind.FLAG:
        return draw(st.integers(f.lo, f.hi))
    if f.name in ("rows", "count", "cols", "body"):
        return draw(st.integers(f.lo, 8))
    if f.name == "dram":
        return draw(st.integers(0, cfg.dram_bytes + 16))
    if f.kind is Kind.SINT:
        return draw(st.integers(max(f.lo, -40), min(f.hi, 40)))
    return draw(st.integers(f.lo, min(f.hi, 300)))


@st.composite
def random_insn(draw):
    op = draw(st.sampled_from(OPS))
    values = {f.name: _field_value(draw, f, TINY) for f in op.fields}
    flags = draw(st.sets(st.sampled_from(["pop_prev", "pop_next", "push_prev", "push_next"]),
                         max_size=2))
    return Instruction(op, values, frozenset(flags))  # possibly illegal: that is the point


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(random_insn(), max_size=12), st.booleans())
def test_random_programs_only_ever_raise_simulation_error(code, halt):
    if halt:
        code = code + [HALT]
    dram = np.random.default_rng(len(code)).integers(0, 256, 4096, dtype=np.uint8)
    try:
        r = run(code, TINY, dram, max_cycles=100_000, trace=True)
    except SimulationError as exc:
        assert isinstance(exc.fault, Fault) and str(exc).startswith(exc.fault.name)
        return
    assert r.cycles >= 1 and r.dram.size == TINY.dram_bytes
    assert r.trace_events()
