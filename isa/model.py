"""The machine model in prose: memories, tokens and the cycle-exact timing rules.

`isa/SPEC.md` is generated from this text and from `isa/table.py`. The simulator
and the RTL are two independent implementations of exactly these rules, and the
test suite holds their cycle counts equal.
"""

MEMORIES = """\
- **DRAM**: byte-addressed, `dram_bytes` long, little-endian, host-visible. A `.dzn`
  program's data segments are copied in before it starts; its named inputs are written
  by the host, its outputs read back after it ends.
- **Scratchpad (SP)** and **accumulator (ACC)**: on-chip SRAMs of rows; each row is
  `n` lanes of 32 bits, so SP holds `sp_bytes / (4n)` rows and ACC `acc_bytes / (4n)`.
  Every lane is 32 bits wide whatever it holds: int8 data (as the matrix array reads it)
  sits sign-extended in a lane, int32 and fp32 fill it. Both memories start zeroed.
- A **local address** names a memory and a row: bit 16 selects SP (0) or ACC (1), bits
  0..15 the row (`sp:12`, `acc:0` in assembly). MATMUL's `dst` is always an ACC row and its
  `inp`/`wgt` always SP rows. An instruction that touches a row at or beyond its memory's
  row count faults (SRAM_OUT_OF_BOUNDS); so does a DMA with `cols > n`.
- Addresses are in **bytes** for DRAM and in **rows** for SRAM.
- **Instruction memory** holds the program's code, apart from DRAM: the host writes it
  before the start, only the dispatcher reads it, and the program counter counts
  instructions (16 bytes each) from 0. No instruction can read or write it.
"""

UNITS = """\
The chip has a **dispatcher** and three **units**, each executing its instructions in
order, one at a time:

| unit | runs |
|---|---|
| load | LOAD, and SYNC with unit=load |
| compute | MATMUL, UNARY, BINARY, TERNARY, REDUCE, REQUANT, MOVE, and SYNC with unit=compute |
| store | STORE, and SYNC with unit=store |
| dispatcher | LOOP and HALT (and the fetch of everything) |

**Dependency tokens** synchronise the units, as in VTA. There are four token channels,
each a counter from 0 to `token_depth`:

| channel | pushed by | popped by | usual meaning |
|---|---|---|---|
| L→C | load, `push_next` | compute, `pop_prev` | "the data you need is loaded" |
| C→L | compute, `push_prev` | load, `pop_next` | "that buffer is free, load into it" |
| C→S | compute, `push_next` | store, `pop_prev` | "results are ready to store" |
| S→C | store, `push_prev` | compute, `pop_next` | "results are stored, that buffer is free" |

Every instruction carries the four flags `pop_prev`, `pop_next`, `push_prev`, `push_next`
(header bits 4..7). The load unit has no prev and the store unit no next neighbour: such
flags are illegal, as are any flags on LOOP and HALT. The compiler, not the hardware, is
responsible for double buffering: a program whose units touch the same memory rows
without a token ordering between them has undefined results.

**At reset** every token counter is 0, every queue is empty, every unit is free, the
dispatcher's program counter is 0 with no loop open, and SP and ACC hold zeros.
"""

TIMING = """\
Time is counted in cycles from 0. All rules below are exact; the simulator computes them
from an event schedule (cost per instruction, not per cycle) and the RTL implements them
in hardware, and the two must agree on every program's cycle count.

**Latency.** Every unit instruction has a latency `L >= 1` given by its formula in the
opcode table (in terms of its fields and the ChipConfig). An instruction that *starts*
on its unit at cycle `s` occupies that unit during cycles `s .. s+L-1` and *completes* at
cycle `s+L`, when the unit is free again.

**Each cycle t** happens in three steps, in this order:

1. *Complete.* Every instruction completing at `t` performs its pushes: each flagged
   channel's counter rises by one. A counter that would exceed `token_depth` is a
   TOKEN_OVERFLOW fault.
2. *Start.* Each unit that is free at `t` and has an instruction at the head of its queue
   starts it if every channel it pops has a count of at least one: those counters fall by
   one, the instruction leaves the queue and runs for `L` cycles from `t`. Otherwise the
   unit stalls on tokens this cycle. (Each channel has exactly one popping unit, so the
   order in which units start does not matter.)
3. *Dispatch.* Unless it has halted, the dispatcher handles the instruction at its
   program counter (LOOP offsets applied):
   - a unit instruction enters its unit's queue if the queue holds fewer than
     `queue_depth` instructions after step 2; otherwise the dispatcher stalls and tries
     again next cycle. An instruction dispatched at `t` can start at `t+1` at the earliest.
   - LOOP opens a loop (one cycle); HALT stops the dispatcher (one cycle).
   At most one instruction is dispatched per cycle. Reaching the end of a loop body jumps
   back (or leaves the loop) within the same cycle: the back edge costs nothing.

**The program's cycle count** is the larger of (HALT's dispatch cycle + 1) and the last
completion cycle of any instruction. A lone `halt` takes 1 cycle; a LOAD of latency 8
dispatched at cycle 0 starts at 1 and completes at 9.

**Data effects.** An instruction reads its sources and writes its destinations within its
busy cycles; since a unit runs one instruction at a time and tokens order the units,
a correctly synchronised program's results do not depend on exactly when. The
simulator applies each instruction's effect at its start cycle, all of an instruction's
reads before any of its writes; a vector instruction whose destination rows overlap its
source rows at a different row (not exactly in place) has undefined results, since
hardware may stream rows. A STORE whose DRAM rows overlap writes them in row order (later
rows win).

**Faults** stop the chip: the simulator raises `SimulationError` naming the fault, the pc
and the instruction; the RTL latches the fault cause (see the fault table) and its pc and
stops. A fault is raised where it arises: PC_OUT_OF_RANGE, LOOP_NESTING and an
undecodable instruction when the dispatcher reaches it; out-of-bounds addresses and
illegal operand values (a bcast lane >= n) when the instruction starts on its unit;
TOKEN_OVERFLOW at the completion whose push overflows.

**Deadlock**: if no instruction is running, the dispatcher is halted or stalled on a full
queue, and every unit with a waiting instruction lacks a token, nothing can ever change:
the simulator reports DEADLOCK naming each unit's state and the instruction it waits at.

**What is not modelled**: SRAM bank conflicts, DRAM refresh and row misses (a DMA costs
`dram_latency + ceil(bytes / dram_bw)` whatever its stride), instruction fetch bandwidth
beyond one per cycle, and power.
"""

NUMERICS = """\
- **int32** arithmetic wraps modulo 2^32 (two's complement) unless a function says
  otherwise; shifts use the low 5 bits of the shift amount; SHR is arithmetic.
- **int8 matrix mode** reads the low 8 bits of each operand lane as a signed int8; the
  products (at most 2^14 in magnitude) are summed exactly and added to int32 with wrap.
- **fp32** follows IEEE 754 binary32 with round-to-nearest-even; backends may flush
  subnormals. Float results are checked against the numpy reference within a stated
  tolerance, not bit for bit (exp2, log2, sin, sqrt and recip may differ by a few ulps
  between backends).
- **Requantisation** (REQUANT), the one integer rounding rule every backend must match bit
  for bit: `p = x * m` (64-bit), `q = s == 0 ? p : (p + 2^(s-1)) >> s` (arithmetic shift,
  so halves round towards +infinity; the add must not overflow, so compute it in 65 bits:
  x = m = -2^31 with s = 63 gives q = 1), `y = min(max(q + zp, lo), hi)`.
- **Casts**: ITOF rounds to nearest even; FTOI rounds to nearest even, saturates to
  [-2^31, 2^31-1], and maps NaN to 0.
"""

# What the RTL does not implement yet, one short line each (e.g. "matmul dtype=f32",
# "unary exp2/log2/sin (f32)"). The RTL's owner keeps this list current; isa/SPEC.md
# renders it, and an instruction listed here is one the RTL reports as unsupported.
RTL_UNSUPPORTED: list[str] = [
    "matmul dtype=f32 (the matrix array is int8 with int32 sums)",
    "unary, binary, ternary and reduce with dtype=f32: every fp32 vector function "
    "(exp2, log2, sqrt, recip, sin, and the fp32 forms of neg, abs, relu, add, sub, mul, div, "
    "max, min, cmplt, cmpeq, where, mulacc, sum, max, min)",
    "unary itof and ftoi (the int32 <-> fp32 casts)",
    "the RTL raises ILLEGAL_INSTRUCTION at dispatch for each of these, so a float program "
    "stops with a clear fault instead of computing something wrong",
]
