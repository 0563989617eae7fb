"""Stride-2 convolutions with output pixels streamed through the matrix array.

The stride-1 kernel (`compiler.isa_conv_pixels`) streams output pixels past stationary
weights from a pixel-major copy of the image. With stride 2, consecutive output pixels
read every other image pixel, so the copy is split into phase planes: plane (a, b) holds
padded pixel (2i + a, 2j + b) at row i*Q + j, and kernel position (kh, kw) reads plane
(kh % 2, kw % 2) at row offset (kh // 2)*Q + kw // 2 (Q = OW + (K-1)/2, the output row
pitch with its junk columns). The planes are the image's own rows split by parity, each
row padded to 2Q pixels, so the copy is one transposing pass; plane (a, b) is then every
other row of its row parity, loaded with a 2-row DMA stride. Each step loads the plane
rows of a few channel chunks for its output-row block and N tile (too many to keep all
resident) and runs every kernel position of those planes on them; the steps, epilogue
and stores are `compiler.isa_conv_stream`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.isa_builder import DramBuffer, Emitter
from compiler.isa_conv_stream import PadSource, PixelStream, StreamUnit, emit_stream, transpose_in


@dataclass(frozen=True)
class StridedConv:
    """A stride-2 K x K convolution over an int8 image, channel-major in DRAM, read either
    padded (`image`, ht x wt per channel) or through `pad` (unpadded)."""

    image: DramBuffer
    ch_stride: int
    ht: int
    wt: int
    cin: int
    cout: int
    k: int
    oh: int
    ow: int
    out_strides: tuple[int, int, int]
    pad: PadSource | None

    @property
    def offset(self) -> int:  # the image starts its buffer (the caller requires it)
        return 0

    @property
    def q(self) -> int:  # output row pitch (plane row length)
        return self.ow + (self.k - 1) // 2

    @property
    def hh(self) -> int:  # plane rows
        return self.oh + (self.k - 1) // 2

    @property
    def halo(self) -> int:
        r = (self.k - 1) // 2
        return r * self.q + r

    @property
    def plane_rows(self) -> int:  # Xt rows of one row parity of a chunk
        return self.hh * 2 * self.q

    def rows_x(self, n: int) -> int:
        """Xt rows per chunk: both row parities, then slack for the last block's reads."""
        return 2 * self.plane_rows + self.halo + 2 * n

    def stream(self, n: int) -> PixelStream:
        """Unit (a, b, chunk) reads plane (a, b) of its chunk (row parity a, then every
        other row from b on) at (kh // 2)*Q + kw // 2 for its kernel positions; each step
        loads its own units' planes."""
        nc, k, q = self.cin // n, self.k, self.q
        planes = [(a, b, ci) for a in range(2) for b in range(2) for ci in range(nc)]
        units = tuple(StreamUnit(u, tuple(((kh // 2) * q + kw // 2, (kh * k + kw) * self.cin
                                           + ci * n)
                                          for kh in range(a, k, 2) for kw in range(b, k, 2)))
                      for u, (a, b, ci) in enumerate(planes))
        sources = tuple(ci * self.rows_x(n) + a * self.plane_rows + b for a, b, ci in planes)
        return PixelStream("conv.phases", self.oh, self.ow, self.cout, self.out_strides,
                           pitch=q, halo=self.halo, spread=2, sources=sources, units=units,
                           a_resident=False, group_sizes=(8, 4, 2, 1))


def plan_strided(cfg, conv: StridedConv, resident: int, temps: int) -> tuple[int, int] | None:
    """(output rows per block, plane-chunk units per step) fitting scratchpad and an
    accumulator half, or None (also when the transposing pass's row buffers do not fit)."""
    if 4 * -(-2 * conv.q // cfg.n) * conv.cin + 1 > cfg.sp_rows:
        return None
    return conv.stream(cfg.n).plan(cfg, resident, temps)


def emit_strided_conv(em: Emitter, conv: StridedConv, weights: np.ndarray, epilogue,
                      out: DramBuffer, rb: int, group: int, bias: np.ndarray | None) -> None:
    """out = epilogue(conv + bias); `weights` is (cout, K*K*cin), K in (kh, kw, cin) order.
    Xt[chunk][(y % 2)*plane_rows + (y // 2)*2Q + x] = padded image[chunk, y, x] for
    y < 2*hh, x < 2Q; with `conv.pad` the left padding of each row (its neighbours in
    DRAM) is zero-filled."""
    n = em.cfg.n
    rows_x = conv.rows_x(n)
    xt = em.alloc(f"{conv.image.name}.phases", (conv.cin // n, rows_x, n), "int8")
    width = 2 * conv.q
    transpose_in(em, conv, conv.pad, xt, rows_x, 2 * conv.hh, width,
                 lambda y: (y % 2) * conv.plane_rows + (y // 2) * width,
                 clear_left=conv.pad.x_lo if conv.pad is not None else 0)
    em.barrier()
    emit_stream(em, conv.stream(n), xt, weights, epilogue, out, rb, group, bias)
