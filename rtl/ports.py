"""Port signatures shared by the core and its units: SRAM row channels and the DRAM port.

SRAM channels move whole rows (n lanes of 32 bits). A read channel is synchronous:
the row named in cycle t arrives on `data` in cycle t+1. A write lands at the end of
the cycle it is enabled in, so a read in the next cycle sees it.

The DRAM port is row-wide and synchronous too: `rd_addr` in cycle t returns the
`row_bytes` bytes from that byte address in cycle t+1 (bytes past the end read as 0);
`wr_*` in cycle t writes the first `wr_len` bytes of `wr_data` at `wr_addr` at the end
of the cycle. Latency and bandwidth are not the memory's business: each DMA unit keeps
the ISA's `dram_latency + ceil(bytes / dram_bw)` busy time itself, so any memory that
answers in one cycle (a testbench model, a BRAM, a cache in front of real DRAM) runs
programs with exactly the simulator's cycle counts.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from isa.config import DRAM_ADDR_BITS, LANE_BYTES, ROW_FIELD_BITS, ChipConfig

ROW_BITS = ROW_FIELD_BITS


def row_width(cfg: ChipConfig) -> int:
    return cfg.n * LANE_BYTES * 8


class ReadChannel(wiring.Signature):
    """A unit's request for one SRAM row; `mem` selects SP (0) or ACC (1).

    In a cycle the unit starts an instruction (`go`) the request is `go_en`, `go_mem` in
    place of `en`, `mem`: both are ready before the start is decided, so the SRAM arbiter
    works out its schedule for either and the start decision only chooses (rtl/sram.py).
    The `next_` members are both requests of the next architectural cycle, as the clock
    enable's rise leaves the unit: the arbiter works out that cycle's first clock a cycle
    ahead, into flip-flops.
    """

    def __init__(self, cfg: ChipConfig):
        super().__init__({"en": Out(1), "mem": Out(1), "row": Out(ROW_BITS),
                          "go": Out(1), "go_en": Out(1), "go_mem": Out(1),
                          "next_en": Out(1), "next_mem": Out(1),
                          "next_go_en": Out(1), "next_go_mem": Out(1),
                          "data": In(row_width(cfg))})


class WriteChannel(wiring.Signature):
    """A unit's write of one SRAM row; `next_en`, `next_mem` as `ReadChannel`'s."""

    def __init__(self, cfg: ChipConfig):
        super().__init__({"en": Out(1), "mem": Out(1), "row": Out(ROW_BITS),
                          "next_en": Out(1), "next_mem": Out(1),
                          "data": Out(row_width(cfg))})


def len_bits(cfg: ChipConfig) -> int:
    return (cfg.row_bytes).bit_length()


class DramPort(wiring.Signature):
    """The core's view of DRAM (the core drives the Out members)."""

    def __init__(self, cfg: ChipConfig):
        super().__init__({
            "rd_en": Out(1), "rd_addr": Out(DRAM_ADDR_BITS), "rd_data": In(row_width(cfg)),
            "wr_en": Out(1), "wr_addr": Out(DRAM_ADDR_BITS), "wr_len": Out(len_bits(cfg)),
            "wr_data": Out(row_width(cfg)),
        })
