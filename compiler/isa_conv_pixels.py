"""Stride-1 convolutions with output pixels streamed through the matrix array.

With channels on rows (the GEMM of `compiler.isa_gemm`), a MATMUL streams at most `cout`
rows past each n x n image block, so every MATMUL of a 64-channel layer pays its n + 2
fill cycles for 64 rows. Here the weights are the stationary block and the image's pixels
stream: up to a whole accumulator of rows per MATMUL, whatever `cout` is.

The image (already padded, pitch Wt) is first transposed once into a pixel-major copy Xt,
one row per padded pixel and n channels per row, chunk by chunk. Its rows keep a pitch
P = Wt - p (the p columns of left padding double as the previous row's right padding), so
output pixel o = oy*P + ox reads Xt row o + kh*P + kw for every kernel position: one
resident block of Xt rows per output-row block serves all K*K positions as row offsets.
Output rows come out with P - OW junk pixels each (never stored); the epilogue runs on the
accumulator, then each output row's n-pixel blocks are transposed back to channel rows and
stored in the output's own (channel-major) layout (`compiler.isa_conv_stream`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from compiler.isa_builder import DramBuffer, Emitter
from compiler.isa_conv_stream import PadSource, PixelStream, StreamUnit, emit_stream, transpose_in


@dataclass(frozen=True)
class PixelConv:
    """A stride-1 K x K convolution over a padded int8 image, channel-major in DRAM."""

    image: DramBuffer
    offset: int  # image element of channel 0, padded row 0, column 0
    ch_stride: int  # image elements between channels
    cin: int
    cout: int
    k: int
    oh: int
    ow: int
    out_strides: tuple[int, int, int]  # output elements between channels, rows, columns

    @property
    def pad(self) -> int:
        return (self.k - 1) // 2

    @property
    def wt(self) -> int:  # padded image pitch
        return self.ow + self.k - 1

    @property
    def ht(self) -> int:
        return self.oh + self.k - 1

    @property
    def pitch(self) -> int:  # Xt rows per output row
        return self.wt - self.pad

    def rows_x(self, n: int) -> int:
        """Xt rows per chunk: the last block's reads run a few rows past the image."""
        return self.ht * self.pitch + n

    def stream(self, n: int) -> PixelStream:
        """Unit j = (kh*K + kw)*chunks + chunk reads its chunk's rows at kh*P + kw; the
        chunks' rows stay resident for all K*K positions of an output-row block."""
        nc, p_ = self.cin // n, self.pitch
        units = tuple(StreamUnit(ci, ((kh * p_ + kw, j * n),)) for j, (kh, kw, ci)
                      in enumerate(product(range(self.k), range(self.k), range(nc))))
        return PixelStream("conv.pixels", self.oh, self.ow, self.cout, self.out_strides,
                           pitch=p_, halo=(self.k - 1) * (p_ + 1), spread=1,
                           sources=tuple(ci * self.rows_x(n) for ci in range(nc)),
                           units=units, a_resident=True, group_sizes=(16, 8, 4, 2, 1))


def plan_rows(cfg, conv: PixelConv, resident: int, temps: int) -> tuple[int, int] | None:
    """(output rows per block, K chunks per step) that fit the scratchpad and an accumulator
    half, or None (also when the transposing pass's row buffers do not fit)."""
    if 4 * -(-conv.wt // cfg.n) * conv.cin > cfg.sp_rows:
        return None
    return conv.stream(cfg.n).plan(cfg, resident, temps)


def emit_pixel_conv(em: Emitter, conv: PixelConv, weights: np.ndarray, epilogue,
                    out: DramBuffer, rb: int, group: int, bias: np.ndarray | None,
                    pad: PadSource | None = None) -> None:
    """out = epilogue(conv + bias); `weights` is (cout, K*K*cin) with K in (kh, kw, cin)
    order. With `pad`, Xt takes its rows from the unpadded image: padding rows are
    zero-filled, and each row stores from column p on (the columns before it hold what
    precedes the row in DRAM; the previous row's right padding covers them)."""
    n = em.cfg.n
    rows_x = conv.rows_x(n)
    xt = em.alloc(f"{conv.image.name}.pixels", (conv.cin // n, rows_x, n), "int8")
    # the last p columns of row y land on row y + 1's left padding: zeros either way
    transpose_in(em, conv, pad, xt, rows_x, conv.ht, conv.wt, lambda y: y * conv.pitch,
                 skip_left=conv.pad if pad is not None else 0)
    em.barrier()
    emit_stream(em, conv.stream(n), xt, weights, epilogue, out, rb, group, bias)
