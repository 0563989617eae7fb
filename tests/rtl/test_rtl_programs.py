# amaranth: UnusedElaboratable=no
"""Whole programs on the RTL (Amaranth's simulator) against the cycle-level simulator.

For every program the RTL's final DRAM must be byte-identical to the simulator's and its
cycle count equal; a program the simulator faults on must fault the RTL with the same
cause. Programs: the examples that run on the tiny chip's integer datapath, and random
race-free programs from hypothesis, run in batches (one elaboration per batch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rtl_programs import TINY, compare, programs

from isa.asm import assemble_file
from isa.container import Program
from isa.table import Mem, MoveFn
from rtl.testbench import run_programs
from simulator import SimulationError
from simulator.api import Simulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def reference(program: Program, inputs=None):
    try:
        return Simulator(program).run(inputs or {})
    except SimulationError as exc:
        return exc.fault


def runs_on_tiny_rtl(program: Program) -> bool:
    from rtl.support import supported

    if program.config != TINY:
        return False
    for insn in program.code:
        v = insn.values
        if "dtype" in v and insn.mnemonic == "matmul" and v["dtype"] != 0:
            return False
        if "fn" in v and "dtype" in v and not supported(insn.op, v["fn"], v["dtype"]):
            return False
    return True


def example_programs() -> list[Program]:
    found = []
    for path in sorted(EXAMPLES.glob("*.s")):
        program = assemble_file(path)
        if runs_on_tiny_rtl(program):
            found.append(program)
    return found


def test_examples_match_simulator():
    found = example_programs()
    assert found, "no example program runs on the tiny chip's integer datapath"
    rng = np.random.default_rng(7)
    inputs = []
    for program in found:
        values = {}
        for sym in program.inputs:
            info = np.iinfo(np.dtype(sym.dtype)) if sym.dtype != "float32" else None
            values[sym.name] = (rng.integers(info.min, info.max, sym.shape, endpoint=True)
                                .astype(sym.dtype) if info else np.zeros(sym.shape, np.float32))
        inputs.append(values)
    results = run_programs(found, cfg=TINY, inputs=inputs)
    for program, values, rtl in zip(found, inputs, results, strict=True):
        compare(program, rtl, reference(program, values))


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # each example costs seconds
@given(st.lists(programs(), min_size=4, max_size=4))
def test_random_programs_match_simulator(batch):
    results = run_programs(batch, cfg=TINY)
    for program, rtl in zip(batch, results, strict=True):
        compare(program, rtl, reference(program))


def test_hand_offs_pop_every_token_they_push():
    """A LOAD after a MATMUL (both write ACC) and a STORE (reads it) gets two hand-offs on
    one channel, compute's own and the store's relayed through compute: its SYNCs pop both
    tokens (one SYNC had popped once, so the load ran beside the store), and the simulator
    finds no race."""
    from rtl_programs import Builder, footprint

    from isa.container import Segment
    from isa.encoding import make
    from isa.table import Unit

    b = Builder(TINY)
    for unit, insn in ((Unit.COMPUTE, make("matmul", dst=6, inp=9, wgt=4, rows=3, acc=1,
                                           dtype=0)),
                       (Unit.STORE, make("store", sram=(1 << 16) | 3, dram=0xCC, stride=7,
                                         rows=5, cols=4, fmt=1)),
                       (Unit.LOAD, make("load", sram=(1 << 16) | 5, dram=0x95, stride=8,
                                        rows=5, cols=2, fmt=2))):
        b.add([insn], unit, footprint(insn, TINY.n), pop_on_first=True)
    program = b.program([Segment(0, bytes(range(256)) * 2)])
    assert not Simulator(program, check_races=True).run().races


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs())
def test_random_programs_are_race_free(program):
    """The RTL matches the simulator only where no two units touch a row unordered."""
    try:
        result = Simulator(program, check_races=True).run()
    except SimulationError:
        return  # a fault: the RTL must raise the same one (test_random_programs_match_...)
    assert not result.races, result.races


@pytest.mark.parametrize("n_rows", [1, 9])
def test_narrow_dma_holds_but_keeps_the_cycle_count(n_rows):
    """A LOAD of one-byte rows takes more clocks than its formula; the count stays exact."""
    from isa.container import Segment
    from isa.encoding import make

    code = [make("load", sram=0, dram=0, stride=1, rows=n_rows, cols=1, fmt=0,
                 flags=("push_next",)),
            make("unary", dst=1 << 16, src1=0, count=n_rows, fn=0, dtype=0, step1=1,
                 flags=("pop_prev", "push_next")),
            make("store", sram=1 << 16, dram=64, stride=4, rows=n_rows, cols=1, fmt=2,
                 flags=("pop_prev",)),
            make("halt")]
    program = Program(TINY, code, [Segment(0, bytes(range(1, 17)))])
    rtl = run_programs([program])[0]
    compare(program, rtl, reference(program))
    if n_rows > TINY.dram_latency:
        assert rtl.counters["hold_cycles"] > 0


def test_instructions_read_only_the_rows_they_use():
    """UNARY, BINARY with an immediate, MOVE FILL, REDUCE without acc and MATMUL (weights,
    then inputs) on SP alone: each reads no channel it does not use, so no cycle asks one
    block RAM port for two rows and the run takes no stall clock."""
    from isa.container import Segment
    from isa.encoding import make
    from isa.table import Axis, BinaryFn, ReduceFn, UnaryFn

    n = TINY.n
    code = [make("load", sram=0, dram=0, stride=4 * n, rows=8, cols=n, fmt=2,
                 flags=("push_next",)),
            make("unary", dst=8, src1=0, count=8, fn=UnaryFn.RELU, dtype=0, step1=1,
                 flags=("pop_prev",)),
            make("binary", dst=16, src1=8, src2=0, count=8, fn=BinaryFn.ADD, dtype=0,
                 step1=1, step2=0, imm_mode=1, imm=7),
            make("move", dst=24, src1=0, count=4, fn=MoveFn.FILL, dstride=1, sstride=0,
                 imm=0xFFFFFFFD),
            make("reduce", dst=28, src1=16, count=8, fn=ReduceFn.SUM, axis=Axis.LANES,
                 dtype=0, acc=0),
            make("matmul", dst=0, inp=32, wgt=0, rows=4, acc=0, dtype=0,
                 flags=("push_next",)),
            make("store", sram=8, dram=1024, stride=4 * n, rows=24, cols=n, fmt=2,
                 flags=("pop_prev",)),
            make("halt")]
    data = np.random.default_rng(3).integers(-2**31, 2**31, 8 * n, dtype=np.int64)
    program = Program(TINY, code, [Segment(0, data.astype("<i4").tobytes())])
    rtl = run_programs([program])[0]
    compare(program, rtl, reference(program))
    assert rtl.counters["stall_clocks"] == 0


def test_nested_loops_move_fields_like_the_simulator():
    """LOOP offsets through every way a level ends: an inner loop that ends mid-body of its
    outer one, a second one whose own inner loop ends with it and with the outer loop (three
    levels at one pc), and an instruction after all of them; each writes rows its offsets
    choose, so a wrong offset shows in the stored bytes."""
    from isa.container import Segment
    from isa.encoding import make

    def unary(fn, dst, src):
        return make("unary", dst=dst, src1=src, count=1, fn=fn, dtype=0, step1=1)

    code = [make("load", sram=0, dram=0, stride=16, rows=8, cols=4, fmt=2,
                 flags=("push_next",)),
            make("sync", unit=1, flags=("pop_prev",)),
            make("loop", count=3, body=7, d_dram=0, d_dst=5, d_src1=1, d_src2=0, d_src3=0),
            make("loop", count=2, body=1, d_dram=0, d_dst=1, d_src1=2, d_src2=0, d_src3=0),
            unary(0, 8, 0),
            unary(1, 10, 1),
            make("loop", count=3, body=3, d_dram=0, d_dst=2, d_src1=1, d_src2=0, d_src3=0),
            unary(2, 12, 2),
            make("loop", count=2, body=1, d_dram=0, d_dst=1, d_src1=0, d_src2=0, d_src3=0),
            unary(3, 30, 3),
            unary(0, 47, 4),
            make("sync", unit=1, flags=("push_next",)),
            make("store", sram=8, dram=256, stride=16, rows=40, cols=4, fmt=2,
                 flags=("pop_prev",)),
            make("halt")]
    data = np.random.default_rng(5).integers(-2**31, 2**31, 32, dtype=np.int64)
    program = Program(TINY, code, [Segment(0, data.astype("<i4").tobytes())])
    rtl = run_programs([program])[0]
    compare(program, rtl, reference(program))


@pytest.mark.parametrize("count,dstride_blocks", [(3, 2), (4, -1)])
def test_transpose_streams_many_blocks_like_the_simulator(count, dstride_blocks):
    """TRANSPOSE of several blocks back to back: each block leaves the register bank the
    other way it came in, so three and four blocks take every change of direction."""
    from isa.container import Segment
    from isa.encoding import local_addr, make

    n = TINY.n
    rows = count * n
    dst = 40 + (rows - n if dstride_blocks < 0 else 0)
    code = [make("load", sram=0, dram=0, stride=4 * n, rows=rows, cols=n, fmt=2,
                 flags=("push_next",)),
            make("move", dst=local_addr(Mem.ACC, dst), src1=0, count=count, fn=MoveFn.TRANSPOSE,
                 dstride=dstride_blocks * n, sstride=n, flags=("pop_prev", "push_next")),
            make("store", sram=local_addr(Mem.ACC, 40),
                 dram=4096, stride=4 * n, rows=abs(dstride_blocks) * rows, cols=n, fmt=2,
                 flags=("pop_prev",)),
            make("halt")]
    data = np.random.default_rng(count).integers(-2**31, 2**31, rows * n, dtype=np.int64)
    program = Program(TINY, code, [Segment(0, data.astype("<i4").tobytes())])
    rtl = run_programs([program])[0]
    compare(program, rtl, reference(program))


def compiled_programs() -> list[tuple[str, Program, dict[str, np.ndarray]]]:
    """Small int graphs compiled for the tiny chip: GEMM and conv on int8 (the matrix
    array) and on int32 (the vector lanes), elementwise, reduction."""
    from compiler.lower import compile_graph
    from frontend.tensor import Tensor

    rng = np.random.default_rng(11)
    a = Tensor.input("a", (8, 8), "int8")
    w = Tensor(rng.integers(-5, 5, (8, 4)).astype(np.int8))
    x = Tensor.input("x", (6, 4), "int32")
    y = Tensor.input("y", (6, 4), "int32")
    img = Tensor.input("img", (1, 2, 5, 5), "int8")
    k = Tensor(rng.integers(-3, 3, (3, 2, 3, 3)).astype(np.int8))
    graphs = {
        "gemm8": (a @ w).graph(),
        "conv8": img.conv2d(k).graph(),
        "gemm": (a.cast("int32") @ w.cast("int32")).graph(),
        "elementwise": ((x + y).maximum(0) * 3).graph(),
        "conv": img.cast("int32").conv2d(k.cast("int32")).graph(),
        "rowsum": x.sum(axis=1).graph(),
    }
    out = []
    for name, graph in graphs.items():
        program = compile_graph(graph, TINY)
        assert runs_on_tiny_rtl(program), name
        inputs = {s.name: rng.integers(-100, 100, s.shape).astype(s.dtype)
                  for s in program.inputs}
        out.append((name, program, inputs))
    return out


def test_compiled_programs_match_simulator():
    corpus = compiled_programs()
    results = run_programs([p for _, p, _ in corpus], cfg=TINY, inputs=[i for _, _, i in corpus])
    for (_, program, inputs), rtl in zip(corpus, results, strict=True):
        compare(program, rtl, reference(program, inputs))


def test_array_of_lut_and_dsp_products_matches_simulator():
    """The matrix array with 2 of its 16 products on DSPs of their own (columns 0 and 1),
    12 on the vector lanes' DSPs (3 a column) and 2 built from LUTs (columns 2 and 3), as
    a device short of DSPs gets it: the compiled int8 GEMM and conv."""
    corpus = [c for c in compiled_programs() if c[0] in ("gemm8", "conv8")]
    results = run_programs([p for _, p, _ in corpus], cfg=TINY,
                           inputs=[i for _, _, i in corpus], array_dsps=2)
    for (_, program, inputs), rtl in zip(corpus, results, strict=True):
        compare(program, rtl, reference(program, inputs))


def test_srams_built_from_column_slices_match_simulator():
    """SP and ACC as column slices (one block RAM deep each on an FPGA, `synth.sram_layout`),
    9 and 5 bits wide so the last slice of a row is narrower: the compiled int8 GEMM and
    the int32 elementwise graph."""
    from isa.table import Mem

    corpus = [c for c in compiled_programs() if c[0] in ("gemm8", "elementwise")]
    assert len(corpus) == 2
    results = run_programs([p for _, p, _ in corpus], cfg=TINY,
                           inputs=[i for _, _, i in corpus],
                           sram_slices={Mem.SP: 9, Mem.ACC: 5})
    for (_, program, inputs), rtl in zip(corpus, results, strict=True):
        compare(program, rtl, reference(program, inputs))


@pytest.mark.parametrize("n", [4, 8])
def test_division_edge_cases_match_simulator(n):
    """DIV on the iterative dividers (one for every four lanes: one on the tiny chip, two at
    n = 8, as the default chip's four): signs, zero divisors, -2^31 / -1, immediates."""
    import dataclasses

    from isa.container import Segment
    from isa.encoding import local_addr, make

    cfg = TINY if n == TINY.n else dataclasses.replace(TINY, name=f"tiny-n{n}", n=n)
    a = np.array([7, -7, 7, -7, 0, -2**31, -2**31, 2**31 - 1, 5, -1, 123456789, -99,
                  1, -2**31, 40, -41, 2**31 - 1, 3, 0, -1], np.int32)
    b = np.array([2, 2, -2, -2, 5, -1, 1, -1, 0, 3, -1000, 7,
                  1, 2, -3, 4, 2**31 - 1, 0, -1, -1], np.int32)
    rows = len(a) // n
    a, b = a[:rows * n], b[:rows * n]
    row = 4 * n  # bytes of an int32 row
    code = [make("load", sram=0, dram=0, stride=row, rows=rows, cols=n, fmt=2),
            make("load", sram=rows, dram=128, stride=row, rows=rows, cols=n, fmt=2,
                 flags=("push_next",)),
            make("binary", dst=local_addr(1, 0), src1=0, src2=rows, count=rows, fn=3, dtype=0,
                 step1=1, step2=1, flags=("pop_prev",)),
            make("binary", dst=local_addr(1, rows), src1=0, count=rows, fn=3, dtype=0, step1=1,
                 imm_mode=1, imm=(-3) & 0xFFFFFFFF),
            make("binary", dst=local_addr(1, 2 * rows), src1=0, src2=rows, count=2, fn=3,
                 dtype=0, step1=1, step2=0, flags=("push_next",)),
            make("store", sram=local_addr(1, 0), dram=256, stride=row, rows=2 * rows + 2,
                 cols=n, fmt=2, flags=("pop_prev",)),
            make("halt")]
    program = Program(cfg, code, [Segment(0, a.tobytes()), Segment(128, b.tobytes())])
    rtl = run_programs([program])[0]
    compare(program, rtl, reference(program))
    assert rtl.counters["hold_cycles"] == 0  # the dividers meet the table's DIV formula


def _load_compute_store(data: np.ndarray, load_rows: int, compute: list[tuple[str, dict]],
                        out_rows: int) -> None:
    """int32 `data` loaded into SP rows 0.., the compute instructions in order (the first
    waits for the load, the last hands over to the store), then out_rows SP rows from
    load_rows on stored: the RTL's bytes and cycles against the simulator's."""
    from isa.container import Segment
    from isa.encoding import make

    code = [make("load", sram=0, dram=0, stride=16, rows=load_rows, cols=4, fmt=2,
                 flags=("push_next",))]
    for i, (mnemonic, values) in enumerate(compute):
        flags = (("pop_prev",) if i == 0 else ()) + \
                (("push_next",) if i == len(compute) - 1 else ())
        code.append(make(mnemonic, **values, flags=flags))
    code += [make("store", sram=load_rows, dram=1024, stride=16, rows=out_rows, cols=4,
                  fmt=2, flags=("pop_prev",)),
             make("halt")]
    program = Program(TINY, code, [Segment(0, data.astype(np.int32).tobytes())])
    rtl = run_programs([program])[0]
    compare(program, rtl, reference(program))


def test_reductions_match_simulator():
    """REDUCE over rows and over lanes, every function, with and without the old row
    (acc), on values that wrap: the fold's and the tree's choices, one instruction each."""
    from isa.table import Axis, ReduceFn

    rng = np.random.default_rng(5)
    count = 4
    edge = [0, 1, -1, 2**31 - 1, -2**31, 7, -7]
    data = rng.choice(np.concatenate([edge, rng.integers(-2**31, 2**31, 40)]),
                      (count + 30) * TINY.n).astype(np.int32)
    compute = []
    dst = count
    for axis in Axis:
        for fn in ReduceFn:
            for acc in (0, 1):
                compute.append(("reduce", dict(dst=dst, src1=0, count=count, fn=int(fn),
                                               axis=int(axis), dtype=0, acc=acc)))
                dst += count if axis == Axis.LANES else 1
    _load_compute_store(data, count + 30, compute, dst - count)


def test_binary_immediates_of_both_signs_match_simulator():
    """Every integer BINARY function with an immediate second operand, negative and
    positive, on values that straddle it: a negative immediate is a signed 32-bit value,
    so CMPLT(0, -1) is 0 and MAX(x, -1) keeps -1 over INT_MIN (a random program found an
    RTL that compared 0xFFFFFFFF as 2^32 - 1)."""
    from isa.table import BinaryFn

    edge = np.array([0, 1, -1, -2, 2**31 - 1, -2**31, 7, -7], np.int32)
    rows = len(edge) // TINY.n
    compute = [("binary", dict(dst=rows * (1 + k), src1=0, count=rows, fn=int(fn), dtype=0,
                               step1=1, imm_mode=1, imm=imm & 0xFFFFFFFF))
               for k, (imm, fn) in enumerate((imm, fn) for imm in (-1, -7, 5, -2**31)
                                             for fn in BinaryFn)]
    _load_compute_store(edge, rows, compute, rows * len(compute))
