"""Decoding for the scheduler: each instruction's unit, token channels, latency, LOOP roles.

Worked out once per pc (and memoised per opcode and per latency-relevant field values),
so the event loop in `simulator.timing` touches only plain attributes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from isa.config import ChipConfig
from isa.encoding import Instruction, check
from isa.errors import EncodingError
from isa.table import BY_OPCODE, FUNC_DTYPES, LATENCY_NAMES, TOKEN_FLAGS, Kind, Unit

UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)
UNIT_NAMES = ("load", "compute", "store")
# Token channels: (pushing unit, popping unit).
CHANNELS = ((Unit.LOAD, Unit.COMPUTE), (Unit.COMPUTE, Unit.LOAD),
            (Unit.COMPUTE, Unit.STORE), (Unit.STORE, Unit.COMPUTE))
CHANNEL_NAMES = tuple(f"{a.name[0]}->{b.name[0]}" for a, b in CHANNELS)
_CHANNEL_OF = {pair: i for i, pair in enumerate(CHANNELS)}
ROLES = ("dram", "dst", "src1", "src2", "src3")  # the order of LOOP's d_* fields


def _flag_channels() -> dict[tuple[int, str], tuple[str, int]]:
    """(unit, token flag) -> ("pop" or "push", channel index), for flags the unit may carry."""
    out = {}
    for unit in UNITS:
        for flag in TOKEN_FLAGS:
            kind, side = flag.split("_")
            other = unit + (1 if side == "next" else -1)
            if 0 <= other <= 2:
                pair = (other, unit) if kind == "pop" else (unit, other)
                out[(int(unit), flag)] = (kind, _CHANNEL_OF[pair])
    return out


_FLAG_CHANNEL = _flag_channels()


class Decoded:
    """What the scheduler needs of one static instruction, worked out once per pc."""

    __slots__ = ("pc", "insn", "opcode", "unit", "latency", "pops", "pushes", "roles",
                 "illegal")

    def __init__(self, pc: int, insn: Instruction, opcode: int, unit: int, latency: int | None,
                 pops: tuple[int, ...], pushes: tuple[int, ...],
                 roles: tuple[tuple[str, int, bool], ...], illegal: str | None = None):
        self.pc, self.insn, self.opcode, self.unit = pc, insn, opcode, unit
        self.latency = latency  # None: the formula reads a LOOP-moved field; evaluate per issue
        self.pops, self.pushes = pops, pushes
        self.roles = roles  # (field, index into ROLES, is a local address)
        self.illegal = illegal

    @classmethod
    def of(cls, pc: int, insn: Instruction, cfg: ChipConfig,
           cache: dict[tuple[int, ...], int] | None = None) -> Decoded:
        """Decode one instruction; `cache` memoises latencies for one config."""
        op = insn.op
        facts = op_facts(op.opcode)
        illegal = None
        if not _quick_legal(insn, facts):
            try:
                check(insn)  # the encoder's own check words the message
                illegal = f"{op.mnemonic}: an encoding the decoder would reject"
            except EncodingError as exc:
                illegal = str(exc)
        unit = int(insn.unit)
        pops: tuple[int, ...] = ()
        pushes: tuple[int, ...] = ()
        latency = None
        if unit != Unit.DISPATCH and illegal is None:
            if insn.flags:
                pops, pushes = _channels(unit, insn.flags)
            if facts.static_latency:
                latency = latency_of(op, facts, insn.values, cfg, cache)
        return cls(pc, insn, op.opcode, unit, latency, pops, pushes, facts.roles, illegal)


@functools.cache
def _channels(unit: int, flags: frozenset[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(pops, pushes) channel indices of a unit's token flags, in table order."""
    pops, pushes = [], []
    for flag in TOKEN_FLAGS:
        if flag in flags:
            kind, channel = _FLAG_CHANNEL[(unit, flag)]
            (pops if kind == "pop" else pushes).append(channel)
    return tuple(pops), tuple(pushes)


def latency_of(op: Any, facts: OpFacts, values: dict[str, int], cfg: ChipConfig,
             cache: dict[tuple[int, ...], int] | None) -> int:
    """The table's formula via OpDef.cycles, memoised on the fields the formula reads."""
    if cache is None:
        return op.cycles(values, cfg)
    key = (op.opcode, *[values[name] for name in facts.latency_fields])
    latency = cache.get(key)
    if latency is None:
        latency = cache[key] = op.cycles(values, cfg)
    return latency


@dataclass(frozen=True)
class OpFacts:
    """Per-opcode facts the scheduler reuses for every instruction of that opcode."""

    roles: tuple[tuple[str, int, bool], ...]
    static_latency: bool  # the latency formula reads no field that LOOP offsets move
    latency_fields: tuple[str, ...]  # the fields the latency formula reads
    ranges: tuple[tuple[str, int, int], ...]  # (field, lo, hi) as the encoder checks them
    func_dtypes: dict[Any, Any] | None


@functools.cache
def op_facts(opcode: int) -> OpFacts:
    op = BY_OPCODE[opcode]
    roles = tuple((f.name, ROLES.index(f.role), f.kind is Kind.LOCAL)
                  for f in op.fields if f.role is not None)
    code = compile(op.latency, "<latency>", "eval")
    moved = {name for name, _, _ in roles}
    read = set(code.co_names) - set(LATENCY_NAMES)
    static = not moved & read
    latency_fields = tuple(f.name for f in op.fields if f.name in read)
    ranges = tuple((f.name, 0, (2 << 16) - 1) if f.kind is Kind.LOCAL else (f.name, f.lo, f.hi)
                   for f in op.fields)
    return OpFacts(roles, static, latency_fields, ranges, FUNC_DTYPES.get(op.mnemonic))


def _quick_legal(insn: Instruction, facts: OpFacts) -> bool:
    """The encoder's checks, fast; False sends the instruction to `check` for the message."""
    values = insn.values
    try:
        for name, lo, hi in facts.ranges:
            if not lo <= values[name] <= hi:
                return False
        if facts.func_dtypes is not None:
            if values["dtype"] not in facts.func_dtypes[values["fn"]]:
                return False
    except (KeyError, TypeError):
        return False
    flags = insn.flags
    if not flags:
        return True
    unit = insn.unit
    if unit == Unit.DISPATCH or not flags <= _FLAG_SET:
        return False
    return not flags & _NO_NEIGHBOUR_FLAGS.get(unit, frozenset())


_FLAG_SET = frozenset(TOKEN_FLAGS)
_NO_NEIGHBOUR_FLAGS = {Unit.LOAD: frozenset({"pop_prev", "push_prev"}),
                       Unit.STORE: frozenset({"pop_next", "push_next"})}
