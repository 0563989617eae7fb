"""Tiled, double-buffered GEMM on the matrix unit, with a fused epilogue.

C[M, N] = A[M, K] @ B[K, N] per batch entry. The schedule follows the latency formula
`matmul = n + rows + stages`: stream as many rows as the accumulator half holds through each
MATMUL (an M block of up to `acc_rows / 2` rows), one n-column output tile at a time in
an accumulator half (double-buffered, so storing tile t overlaps computing tile t + 1),
K streamed in n-wide chunks. A chunks (M block x n lanes) and W tiles (n x n) sit in
scratchpad buffers that alternate between steps, so the load unit fetches step s + 1
while the compute unit multiplies step s; dependency tokens order the units:

    load  --L->C "step s loaded"-->  compute  --C->S "tile t ready"-->  store
    load  <-C->L "step s done, its buffer is free"--  compute  <-S->C "tile t stored"--

When the whole M block of A fits the scratchpad it stays resident across the N tiles and
only W tiles stream. The epilogue (bias, activation, requantisation: any kernel epilogue)
runs on the accumulator tile before its store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from compiler.isa_builder import CompileError, Credits, Emitter, acc, fast_make, sp
from isa.table import Fmt, MatType


@dataclass(frozen=True)
class Mat:
    """A row-major matrix in DRAM: `rows` x `cols` elements, rows `ld` bytes apart."""

    addr: int
    rows: int
    cols: int
    ld: int
    fmt: Fmt
    host: np.ndarray | None = field(default=None, compare=False)  # (rows, cols) if constant

    @property
    def esize(self) -> int:
        return 4 if self.fmt == Fmt.X32 else 1

    def at(self, r: int, c: int) -> int:
        return self.addr + r * self.ld + c * self.esize


@dataclass(frozen=True)
class WindowB:
    """A B operand read straight out of an image (implicit im2col for convolutions).

    K chunk j holds `rows` consecutive K values `stride` elements apart starting at element
    `offset`; N tile t covers output columns n0 .. n0+cols-1 whose B elements start at
    element `offset` more. A must hold chunk j's K values in columns j*n .. j*n+rows-1.
    """

    chunks: tuple[tuple[int, int, int], ...]  # (offset, rows, stride) per K chunk
    ntiles: tuple[tuple[int, int, int], ...]  # (output column offset, cols, offset) per tile


@dataclass(frozen=True)
class Tile:
    """One output tile: batch entry, first row and rows, first column and columns."""

    batch: int
    m0: int
    rows: int
    n0: int
    cols: int
    index: int  # tile number in emission order (selects the buffers)


class TileEpilogue(Protocol):
    """What a GEMM needs from a fused epilogue; see `compiler.isa_contraction`."""

    mb: int  # rows per M block, set by emit_gemm
    tile_regions: int  # M-block-sized SP regions loaded per tile (double-buffered)
    block_regions: int  # M-block-sized SP regions loaded once per M block (per-row params)
    temp_regions: int  # M-block-sized SP regions for intermediate values
    acc_init: bool  # the accumulator starts from per-row values loaded by DMA

    def resident_rows(self) -> int: ...
    def accepts(self, mb: int) -> bool: ...
    def widen(self) -> None: ...
    def emit_acc_init(self, em: Emitter, tile: Tile, acc_addr: int) -> None: ...
    def emit_resident(self, em: Emitter, base: int) -> None: ...
    def emit_tile_loads(self, em: Emitter, tile: Tile, base: int) -> None: ...
    def emit_block_loads(self, em: Emitter, tile: Tile, base: int) -> None: ...
    def emit_tile_compute(self, em: Emitter, tile: Tile, acc_addr: int, inputs: int,
                          temps: int, resident: int) -> int: ...


class FreeTokens:
    """The compute -> load channel as one ordered list of events: compute pushes a token
    per finished step ("its buffers are free") and, when tiles preload their accumulator,
    one per tile whose accumulator half the store unit has released. The load unit pops
    in the same order, so before it relies on an event it owes pops up to that event."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, int], int] = {}
        self.pushed = 0
        self.popped = 0

    def push(self, event: tuple[str, int]) -> None:
        self.index[event] = self.pushed
        self.pushed += 1

    def need(self, event: tuple[str, int]) -> int:
        if event not in self.index:
            return 0
        owe = max(0, self.index[event] + 1 - self.popped)
        self.popped += owe
        return owe


@dataclass(frozen=True)
class GemmPlan:
    mb: int  # rows per M block (rows streamed per MATMUL)
    group: int  # K chunks per step
    resident_a: bool


def plan(cfg, m: int, k: int, epi_regions: int, resident_rows: int) -> GemmPlan:
    """Choose the M block, the K-chunk group and whether A stays resident."""
    n = cfg.n
    kc = -(-k // n)
    mb = min(m, cfg.acc_rows // 2, 1024)
    while True:
        free = cfg.sp_rows - resident_rows - epi_regions * mb
        if kc * mb + 2 * n * min(kc, 8) <= free:
            group = max(1, min(kc, (free - kc * mb) // (2 * n), 16))
            return GemmPlan(mb, group, True)
        group = min(kc, max(1, free // (2 * (mb + n))), 4)
        if 2 * group * (mb + n) <= free:
            return GemmPlan(mb, group, False)
        if mb <= 1:
            raise CompileError(f"matrix tile does not fit the scratchpad ({cfg.sp_rows} rows)")
        mb = max(1, mb // 2)


def emit_gemm(em: Emitter, problems: list[tuple[Mat, Mat, Mat]], dtype: MatType,
              epilogue: TileEpilogue | None = None, window: WindowB | None = None) -> None:
    """Emit C = A @ B (then epilogue) for each (A, B, C) in `problems`; shapes must agree.
    With `window`, B's tiles are addressed by it (B's `addr` and `fmt` still apply)."""
    cfg, n = em.cfg, em.cfg.n
    a0, b0, _ = problems[0]
    m, k, ncols = a0.rows, a0.cols, b0.cols
    for a, b, c in problems:
        if (a.rows, a.cols, b.rows, b.cols, c.rows, c.cols) != (m, k, k, ncols, m, ncols):
            raise CompileError("batched GEMM entries differ in shape")
    epi_tile = epilogue.tile_regions if epilogue else 0
    epi_temp = epilogue.temp_regions if epilogue else 0
    epi_block = epilogue.block_regions if epilogue else 0
    res_rows = epilogue.resident_rows() if epilogue else 0
    p = plan(cfg, m, k, 2 * epi_tile + epi_temp + epi_block, res_rows)
    if epilogue is not None and not epilogue.accepts(p.mb):
        epilogue.widen()
        epi_block = epilogue.block_regions
        p = plan(cfg, m, k, 2 * epi_tile + epi_temp + epi_block, res_rows)
    # Per-block epilogue tables double-buffered when that costs no rows per MATMUL: the
    # next M block's tables (and A chunks) then load while this block still computes.
    block_bufs = 1
    if epi_block and not p.resident_a and -(-m // p.mb) > 1:
        p2 = plan(cfg, m, k, 2 * epi_tile + epi_temp + 2 * epi_block, res_rows)
        if p2.mb == p.mb and not p2.resident_a:
            p, block_bufs = p2, 2
    mb, group, kc = p.mb, p.group, -(-k // n)
    if window is not None:
        kc = len(window.chunks)
        if kc * n != k:
            raise CompileError("internal: window GEMM needs A padded to whole chunks")
    ntiles = window.ntiles if window is not None else tuple(
        (n0, min(n, ncols - n0), 0) for n0 in range(0, ncols, n))
    if epilogue is not None:
        epilogue.mb = mb
    # Scratchpad layout.
    res_base = 0
    w_base = res_base + res_rows
    w_size = group * n
    a_base = w_base + 2 * w_size
    a_size = kc * mb if p.resident_a else group * mb
    a_bufs = 1 if p.resident_a else 2
    tile_base = a_base + a_bufs * a_size
    block_base = tile_base + 2 * epi_tile * mb
    temp_base = block_base + block_bufs * epi_block * mb
    mblocks = -(-m // mb)

    def block_at(tile: Tile) -> int:
        """The tile's per-block table region (M blocks alternate between the buffers)."""
        return block_base + ((tile.batch * mblocks + tile.m0 // mb) % block_bufs) \
            * epi_block * mb
    if temp_base + epi_temp * mb > cfg.sp_rows:
        raise CompileError("GEMM scratchpad plan overflows")
    blocked = [_blocked(em, a, mb, kc) if a.host is not None else None for a, _, _ in problems]
    if epilogue and res_rows:
        epilogue.emit_resident(em, res_base)
    data_free = FreeTokens()  # compute -> load: W/A/epilogue buffers (and halves) free
    acc_free = Credits(2)  # store -> compute: accumulator halves free
    # With a preloaded accumulator the load unit writes a half, so it must know the store
    # unit released it: compute takes the store's token after the previous tile's
    # MATMULs (long after that store began) and passes it on to the load unit.
    acc_init = epilogue is not None and epilogue.acc_init
    total_tiles = len(problems) * -(-m // mb) * len(ntiles)
    step = tile_no = 0
    # K chunks split into near-equal groups: a short group followed by a long one would
    # leave the compute unit waiting for the long group's loads.
    count = -(-kc // group)
    bounds = [kc * i // count for i in range(count + 1)]
    groups = list(zip(bounds[:-1], bounds[1:], strict=True))
    steps: list[tuple[Mat, Mat, Mat, Tile, int, int, int, int, int]] = []
    for bi, (a, b, c) in enumerate(problems):
        for m0 in range(0, m, mb):
            rows = min(mb, m - m0)
            for ti, (n0, cols, n_off) in enumerate(ntiles):
                tile = Tile(bi, m0, rows, n0, cols, tile_no)
                for gi, (g0, g1) in enumerate(groups):
                    steps.append((a, b, c, tile, ti, n_off, gi, g0, g1))
                tile_no += 1

    # With double-buffered tables, an M block's tables load two steps into the previous
    # block (all older blocks are done by then): a large table loaded with the block's
    # first step would hold the load unit, and the MATMULs waiting on it, for its length.
    firsts = [i for i, st in enumerate(steps) if st[4] == 0 and st[6] == 0]
    hoist_at: dict[int, int] = {}
    if block_bufs == 2:
        for prev, nxt in zip(firsts, firsts[1:], strict=False):
            if nxt - prev >= 4:
                hoist_at[prev + 2] = nxt
    hoisted = set(hoist_at.values())
    pieces: list = []  # table loads still to go, a piece every other step

    def emit_loads(step: int) -> None:
        """The load unit's part of `step`: A chunks (unless resident), the W rows, the
        epilogue's tile inputs and the accumulator's start values."""
        a, b, _, tile, ti, n_off, gi, g0, g1 = steps[step]
        buf, rows, m0, n0, cols = step % 2, tile.rows, tile.m0, tile.n0, tile.cols
        start = len(em.code)
        owe = data_free.need(("step", step - 2))
        if (p.resident_a or (epi_block and block_bufs == 1)) and ti == 0 and gi == 0:
            owe += data_free.need(("step", step - 1))  # single-buffered per block
        if epilogue and epi_block and ti == 0 and gi == 0 and step not in hoisted:
            epilogue.emit_block_loads(em, tile, block_at(tile))
        if epilogue and step in hoist_at:  # the next M block's tables, well ahead of it
            at = len(em.code)
            epilogue.emit_block_loads(em, steps[hoist_at[step]][3], block_at(
                steps[hoist_at[step]][3]))
            pieces.extend(_split_loads(em.code[at:], 64))
            del em.code[at:]
        if pieces and (step % 2 == 0 or step in hoisted):
            for insn in (pieces if step in hoisted else pieces[:1]):
                em.code.append(insn)
            del pieces[:len(pieces) if step in hoisted else 1]
        blk = blocked[tile.batch]
        a_first, a_end = (0, kc) if p.resident_a else (g0, g1)
        a_row = a_base + (0 if p.resident_a else buf * a_size)
        if blk is not None and (not p.resident_a or (ti == 0 and gi == 0)):
            # chunk-major copy: the step's chunks are one run of rows, one DMA
            em.emit("load", sram=sp(a_row), dram=blk[m0] + a_first * rows * n * a.esize,
                    stride=n * a.esize, rows=(a_end - a_first) * rows, cols=n, fmt=a.fmt)
        elif blk is None and (not p.resident_a or (ti == 0 and gi == 0)):
            for j in range(a_first, a_end):
                em.emit("load", sram=sp(a_row + (j - a_first) * rows), dram=a.at(m0, j * n),
                        stride=a.ld, rows=rows, cols=min(n, k - j * n), fmt=a.fmt)
        if window is None:
            krows = min(k, g1 * n) - g0 * n
            em.emit("load", sram=sp(w_base + buf * w_size), dram=b.at(g0 * n, n0),
                    stride=b.ld, rows=krows, cols=cols, fmt=b.fmt)
        else:  # one DMA per run of chunks that continue each other's rows
            j = g0
            while j < g1:
                off, krows, kstride = window.chunks[j]
                total, e = krows, j + 1
                while e < g1 and krows == n and window.chunks[e][2] == kstride \
                        and window.chunks[e][0] == off + total * kstride \
                        and window.chunks[e - 1][1] == n:
                    total += window.chunks[e][1]
                    e += 1
                em.emit("load", sram=sp(w_base + buf * w_size + (j - g0) * n),
                        dram=b.addr + (off + n_off) * b.esize,
                        stride=kstride * b.esize, rows=total, cols=cols, fmt=b.fmt)
                j = e
        if epilogue and gi == 0 and epi_tile:
            epilogue.emit_tile_loads(em, tile, tile_base + (tile.index % 2) * epi_tile * mb)
        relay_owe = 0
        if acc_init and gi == 0:
            relay_owe = data_free.need(("half", tile.index))
            init_at = len(em.code)
            assert epilogue is not None
            epilogue.emit_acc_init(em, tile, acc((tile.index % 2) * mb))
        em.flag(len(em.code) - 1, "push_next")
        if relay_owe:
            em.pops(init_at, "load", "pop_next", relay_owe)
        em.pops(start, "load", "pop_next", owe)

    def needs_whole_previous(step: int) -> bool:
        """Whether `step`'s loads wait for the whole previous step (a single-buffered
        region is reloaded), so they cannot be issued before its epilogue."""
        _, _, _, _, ti, _, gi, _, _ = steps[step]
        return bool((p.resident_a or (epi_block and block_bufs == 1)) and ti == 0 and gi == 0)

    # Program order: the loads of step s + 1 follow the MATMULs of step s, ahead of its
    # epilogue and store, so a long epilogue never keeps the dispatcher from feeding the
    # load unit (double buffering makes that safe: step s + 1 needs only step s - 1 done).
    emit_loads(0)
    for step, (_, _, c, tile, _, _, gi, g0, g1) in enumerate(steps):
        buf, rows, tile_no = step % 2, tile.rows, tile.index
        half = (tile_no % 2) * mb
        # Compute unit: the MATMULs of this step, the epilogue after the last.
        start = len(em.code)
        for j in range(g0, g1):
            inp = (a_base + j * rows) if p.resident_a else (a_base + buf * a_size + (j - g0) * rows)
            wgt = w_base + buf * w_size + (j - g0) * n
            em.emit("matmul", dst=half, inp=inp, wgt=wgt, rows=rows,
                    acc=int(j > 0 or acc_init), dtype=int(dtype))
        last_group = gi == len(groups) - 1
        if acc_init and last_group and tile_no + 1 < total_tiles:
            relay = acc_free.need(tile_no + 1)
            if relay:  # the next tile's half is stored: let the load unit in
                em.sync("compute", "pop_next", "push_prev")
                for _ in range(relay - 1):
                    em.sync("compute", "pop_next")
                data_free.push(("half", tile_no + 1))
        em.flag(start, "pop_prev")
        if gi == 0:
            em.pops(start, "compute", "pop_next", acc_free.need(tile_no))
        ahead = step + 1 < len(steps) and not needs_whole_previous(step + 1)
        if not last_group or not epilogue:
            em.flag(len(em.code) - 1, "push_prev", *(("push_next",) if last_group else ()))
            data_free.push(("step", step))
            if step + 1 < len(steps):
                emit_loads(step + 1)
        else:
            if ahead:
                emit_loads(step + 1)
            before = len(em.code)
            result = epilogue.emit_tile_compute(
                em, tile, acc(half), tile_base + (tile_no % 2) * epi_tile * mb,
                temp_base, block_at(tile))
            if len(em.code) == before:  # a SYNC takes the flags
                em.sync("compute")
            em.flag(len(em.code) - 1, "push_prev", "push_next")
            data_free.push(("step", step))
            if step + 1 < len(steps) and not ahead:
                emit_loads(step + 1)
        if last_group:  # Store unit: the finished tile.
            result = acc(half) if not epilogue else result
            em.emit("store", ("pop_prev", "push_prev"), sram=result, dram=c.at(tile.m0, tile.n0),
                    stride=c.ld, rows=rows, cols=tile.cols, fmt=c.fmt)


def _blocked(em: Emitter, a: Mat, mb: int, kc: int) -> dict[int, int]:
    """A constant A laid out chunk-major within each M block ([block][chunk][row][n]), so
    the K chunks a step needs are one run of rows: one DMA (one DRAM latency) instead of
    one per chunk. Returns the DRAM address of each M block by its first row."""
    n = em.cfg.n
    assert a.host is not None
    host = np.zeros((a.rows, kc * n), a.host.dtype)
    host[:, :a.cols] = a.host
    parts, addrs, at = [], {}, 0
    for m0 in range(0, a.rows, mb):
        blk = host[m0:m0 + mb].reshape(-1, kc, n).transpose(1, 0, 2)
        addrs[m0] = at
        at += blk.size * a.esize
        parts.append(blk.reshape(-1))
    buf = em.constant("gemm.a.blocked", np.concatenate(parts))
    return {m0: buf.addr + off for m0, off in addrs.items()}


def _split_loads(code: list, rows: int) -> list:
    """LOADs (no token flags) cut into pieces of at most `rows` rows: spread over several
    steps, a large table fills the load unit's spare time instead of holding it."""
    out = []
    for insn in code:
        v = insn.values
        assert insn.mnemonic == "load" and not insn.flags
        for r0 in range(0, v["rows"], rows):
            out.append(fast_make("load", (), {**v, "sram": v["sram"] + r0,
                                              "dram": v["dram"] + r0 * v["stride"],
                                              "rows": min(rows, v["rows"] - r0)}))
    return out
