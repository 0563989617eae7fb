"""Program emission for the ISA lowering: instructions, token bookkeeping and the DRAM plan.

Every kernel lowering writes through one `Emitter`. It keeps the instruction list, lays
out DRAM (constants as data segments, activations as bump-allocated buffers), and counts
what each dependency-token channel has been pushed and popped, so a kernel can end with
every channel drained (`barrier`) and the next kernel starts from a clean slate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isa.config import ChipConfig
from isa.container import Program, Segment, Symbol
from isa.encoding import Instruction, local_addr, make
from isa.errors import DozenError
from isa.table import FUNC_DTYPES, NEIGHBOURS, OPS, Fmt, Kind, Mem, OpDef, SyncUnit

DRAM_ALIGN = 64


class CompileError(DozenError):
    """The graph cannot be compiled for this chip (an op it cannot run, a size it cannot hold)."""

    exit_code = 2


def sp(row: int) -> int:
    return local_addr(Mem.SP, row)


def acc(row: int) -> int:
    return local_addr(Mem.ACC, row)


# Token channels, named (producer, consumer): each flag of an instruction moves one of them.
CHANNEL_OF = {("load", "push_next"): "LC", ("compute", "pop_prev"): "LC",
              ("compute", "push_prev"): "CL", ("load", "pop_next"): "CL",
              ("compute", "push_next"): "CS", ("store", "pop_prev"): "CS",
              ("store", "push_prev"): "SC", ("compute", "pop_next"): "SC"}
CHANNELS = ("LC", "CL", "CS", "SC")


@dataclass
class DramBuffer:
    """A tensor's home in DRAM: contiguous, row-major, `dtype` in int8/int32/float32."""

    name: str
    addr: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def esize(self) -> int:
        return 1 if self.dtype == "int8" else 4

    @property
    def fmt(self) -> Fmt:
        return Fmt.I8 if self.dtype == "int8" else Fmt.X32

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.esize


@dataclass
class Emitter:
    """Collects a program: code, DRAM segments, symbols and token balances."""

    cfg: ChipConfig
    code: list[Instruction] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    dram_top: int = 0
    pushed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    popped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    stats: dict[str, int] = field(default_factory=lambda: {"macs": 0})

    # DRAM plan -------------------------------------------------------------------------
    def alloc(self, name: str, shape: tuple[int, ...], dtype: str) -> DramBuffer:
        buf = DramBuffer(name, self.dram_top, tuple(int(d) for d in shape), dtype)
        end = buf.addr + max(buf.nbytes, 1)
        if end > self.cfg.dram_bytes:
            raise CompileError(f"DRAM overflow: {name!r} needs {buf.nbytes} bytes at "
                               f"{buf.addr:#x}, the chip has {self.cfg.dram_bytes}")
        self.dram_top = -(-end // DRAM_ALIGN) * DRAM_ALIGN
        return buf

    def constant(self, name: str, array: np.ndarray) -> DramBuffer:
        """Place a constant array in DRAM as a data segment of the program."""
        dtype = {"int8": "int8", "int32": "int32", "float32": "float32"}[str(array.dtype)]
        buf = self.alloc(name, array.shape, dtype)
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        if data:
            self.segments.append(Segment(buf.addr, data))
        return buf

    def symbol(self, buf: DramBuffer, kind: str, scale: float | None = None,
               zero_point: int = 0) -> None:
        self.symbols.append(Symbol(buf.name, kind, buf.addr, buf.shape, buf.dtype, scale,
                                   zero_point))

    # Instructions ----------------------------------------------------------------------
    def emit(self, mnemonic: str, flags: tuple[str, ...] = (), **values: int) -> Instruction:
        insn = fast_make(mnemonic, flags, values)
        unit = insn.unit.name.lower()
        for flag in flags:
            channel = CHANNEL_OF[(unit, flag)]
            (self.pushed if flag.startswith("push") else self.popped)[channel] += 1
        if mnemonic == "matmul":
            self.stats["macs"] += values["rows"] * self.cfg.n * self.cfg.n
        self.code.append(insn)
        return insn

    def flag(self, index: int, *flags: str) -> None:
        """Add token flags to the already emitted instruction at `index` (a group's first or
        last instruction), so a group synchronises without extra SYNC instructions."""
        old = self.code[index]
        if old.mnemonic == "loop":  # the dispatcher takes no flags: a SYNC goes first
            unit = self.code[index + 1].unit.name.lower()
            self.code.insert(index, make("sync", (), unit=int(SyncUnit[unit.upper()])))
            old = self.code[index]
        new = with_flags(old, frozenset(flags))
        unit = new.unit.name.lower()
        for flag in set(flags) - old.flags:
            channel = CHANNEL_OF[(unit, flag)]
            (self.pushed if flag.startswith("push") else self.popped)[channel] += 1
        self.code[index] = new

    def pops(self, index: int, unit: str, flag: str, count: int) -> None:
        """Pop `count` tokens before the instruction at `index` runs: one on the instruction
        itself, the rest as SYNCs inserted right before it."""
        if count <= 0:
            return
        self.flag(index, flag)
        for _ in range(count - 1):
            insn = make("sync", (flag,), unit=int(SyncUnit[unit.upper()]))
            self.code.insert(index, insn)
            self.popped[CHANNEL_OF[(unit, flag)]] += 1

    def sync(self, unit: str, *flags: str) -> None:
        self.emit("sync", tuple(flags), unit=int(SyncUnit[unit.upper()]))

    def outstanding(self, channel: str) -> int:
        return self.pushed[channel] - self.popped[channel]

    def barrier(self) -> None:
        """Drain every channel, then order all units: later work sees earlier stores.

        The store unit signals compute, compute signals load; surplus tokens left by
        double buffering are popped first so every channel is back at zero.
        """
        for _ in range(self.outstanding("LC")):
            self.sync("compute", "pop_prev")
        for _ in range(self.outstanding("CS")):
            self.sync("store", "pop_prev")
        for _ in range(self.outstanding("SC")):
            self.sync("compute", "pop_next")
        self.sync("store", "push_prev")
        self.sync("compute", "pop_next", "push_prev")
        for _ in range(self.outstanding("CL")):
            self.sync("load", "pop_next")

    def program(self, meta: dict | None = None) -> Program:
        self.emit("halt")
        return Program(self.cfg, self.code, sorted(self.segments, key=lambda s: s.addr),
                       self.symbols, dict(meta or {}))


def _bounds(op: OpDef) -> tuple[tuple[str, int, int, int], ...]:
    out = []
    for f in op.fields:
        lo, hi = (0, (2 << 16) - 1) if f.kind is Kind.LOCAL else (f.lo, f.hi)
        out.append((f.name, lo, hi, 0 if f.kind is Kind.SINT else f.lo))
    return tuple(out)


_FAST = {op.mnemonic: (op, _bounds(op), frozenset(f.name for f in op.fields)) for op in OPS}


def fast_make(mnemonic: str, flags: tuple[str, ...] | frozenset[str], values: dict[str, int]
              ) -> Instruction:
    """`isa.encoding.make` for the compiler's hot loop: the field ranges come from the ISA
    table once; anything unusual (a bad field, a function/dtype pair, token flags) goes
    through `make`, which checks everything and names the problem."""
    op, bounds, names = _FAST[mnemonic]
    if flags or not names.issuperset(values):
        return make(mnemonic, tuple(flags), **values)
    full = {}
    for name, lo, hi, default in bounds:
        v = values.get(name, default)
        if not lo <= v <= hi:
            return make(mnemonic, tuple(flags), **values)  # raises, naming the field
        full[name] = v
    table = FUNC_DTYPES.get(mnemonic)
    if table is not None and full["dtype"] not in table[op.field("fn").enum(full["fn"])]:
        return make(mnemonic, tuple(flags), **values)  # raises: fn undefined for the dtype
    return Instruction(op, full, frozenset())


def with_flags(insn: Instruction, flags: frozenset[str]) -> Instruction:
    """`insn` (already checked) plus token flags, which must suit its unit."""
    unit = insn.unit
    sides = NEIGHBOURS.get(unit)
    for flag in flags:
        side = flag.split("_")[1]
        if sides is None or (sides[0] if side == "prev" else sides[1]) is None:
            return make(insn.mnemonic, tuple(insn.flags | flags), **insn.values)  # raises
    return Instruction(insn.op, insn.values, insn.flags | flags)


class Credits:
    """Double-buffer bookkeeping for one producer/consumer pair of units.

    The consumer pushes one 'free' token per finished step; before the producer reuses
    buffer b for step s it must have popped the tokens of every step up to s - depth.
    `need(s)` returns how many pops the producer still owes before step s.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.popped = 0

    def need(self, step: int) -> int:
        want = max(0, step - self.depth + 1)
        owe = max(0, want - self.popped)
        self.popped += owe
        return owe

    def need_all(self, steps_done: int) -> int:
        owe = max(0, steps_done - self.popped)
        self.popped += owe
        return owe
