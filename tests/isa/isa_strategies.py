"""Hypothesis strategies for valid Dozen instructions, configs and programs (shared by tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from isa.config import PRESETS, ChipConfig
from isa.container import SYMBOL_DTYPES, Program, Segment, Symbol
from isa.encoding import Instruction, check
from isa.table import FUNC_DTYPES, NEIGHBOURS, OPS, TOKEN_FLAGS, Field, Kind, OpDef, unit_of


def field_values(f: Field) -> st.SearchStrategy[int]:
    if f.kind is Kind.LOCAL:
        return st.integers(0, (1 << f.bits) - 1)
    if f.kind is Kind.ENUM:
        assert f.enum is not None
        return st.sampled_from([int(e) for e in f.enum])
    return st.integers(f.lo, f.hi)


def allowed_flags(op: OpDef, values: dict[str, int]) -> list[str]:
    unit = unit_of(op, values)
    if unit not in NEIGHBOURS:
        return []
    prev, nxt = NEIGHBOURS[unit]
    return [flag for flag in TOKEN_FLAGS
            if (prev is not None or not flag.endswith("prev"))
            and (nxt is not None or not flag.endswith("next"))]


@st.composite
def instructions(draw: st.DrawFn, ops: tuple[OpDef, ...] = OPS) -> Instruction:
    """Any legal instruction: every field in range, fn legal for dtype, flags legal for unit."""
    op = draw(st.sampled_from(ops))
    values = {f.name: draw(field_values(f)) for f in op.fields}
    table = FUNC_DTYPES.get(op.mnemonic)
    if table is not None:
        fn_enum = op.field("fn").enum
        assert fn_enum is not None
        fn = fn_enum(values["fn"])
        values["dtype"] = int(draw(st.sampled_from(sorted(table[fn]))))
    flags = draw(st.sets(st.sampled_from(allowed_flags(op, values)))) \
        if allowed_flags(op, values) else set()
    insn = Instruction(op, values, frozenset(flags))
    check(insn)
    return insn


@st.composite
def configs(draw: st.DrawFn) -> ChipConfig:
    """A preset, or a random valid chip."""
    if draw(st.booleans()):
        return PRESETS[draw(st.sampled_from(sorted(PRESETS)))]
    n = 1 << draw(st.integers(1, 6))
    row = 4 * n
    return ChipConfig(name=draw(st.sampled_from(["custom", "x1", "my_chip"])), n=n,
                      sp_bytes=row * draw(st.integers(2 * n, 4096)),
                      acc_bytes=row * draw(st.integers(n, 2048)),
                      dram_bytes=draw(st.integers(1 << 12, 1 << 32)),
                      dram_latency=draw(st.integers(0, 500)), dram_bw=draw(st.integers(1, 512)),
                      queue_depth=draw(st.integers(1, 64)), token_depth=draw(st.integers(1, 64)),
                      clock_mhz=draw(st.sampled_from([100.0, 250.5, 1000.0, 1])),
                      dtypes=tuple(draw(st.sampled_from([["int8", "int32", "fp32"], ["int8"],
                                                         ["fp32", "int32"]]))))


@st.composite
def programs(draw: st.DrawFn) -> Program:
    """A random valid program: instructions, non-overlapping data segments, symbols, meta."""
    cfg = draw(configs())
    code = draw(st.lists(instructions(), min_size=0, max_size=12))
    segments, addr = [], 0
    for _ in range(draw(st.integers(0, 3))):
        addr += draw(st.integers(0, 64))
        data = draw(st.binary(min_size=0, max_size=24))
        if addr + len(data) > min(cfg.dram_bytes, 4096):
            break
        segments.append(Segment(addr, data))
        addr += len(data)
    symbols = []
    for i in range(draw(st.integers(0, 3))):
        dtype = draw(st.sampled_from(sorted(SYMBOL_DTYPES)))
        shape = tuple(draw(st.lists(st.integers(0, 8), min_size=0, max_size=3)))
        quant = draw(st.booleans())
        symbols.append(Symbol(f"t{i}", draw(st.sampled_from(["input", "output"])),
                              draw(st.integers(0, 1024)), shape, dtype,
                              scale=draw(st.floats(1e-6, 10.0)) if quant else None,
                              zero_point=draw(st.integers(-128, 127)) if quant else 0))
    meta = draw(st.dictionaries(st.sampled_from(["source", "graph", "note"]),
                                st.one_of(st.text(max_size=8), st.integers(-5, 5)), max_size=2))
    return Program(cfg, code, segments, symbols, meta)
