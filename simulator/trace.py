"""Chrome trace JSON (ui.perfetto.dev, chrome://tracing) of one run.

One track per unit and one for the dispatcher; a slice per instruction named by its
disassembly; token waits and dispatcher stalls as their own slices; token counts, queue
lengths and the array's MACs per cycle as counter tracks. Timestamps are real time at
the config's clock (microseconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isa.asm import format_instruction
from isa.container import write_atomic
from isa.encoding import Instruction
from isa.table import Op
from simulator.decode import CHANNEL_NAMES, UNIT_NAMES, Decoded

if TYPE_CHECKING:
    from simulator.api import Result

_PID = 1
_DISPATCH_TID = 0


def chrome_trace(result: Result) -> dict[str, Any]:
    log = result.log
    assert log is not None
    us = 1.0 / result.cfg.clock_mhz  # microseconds per cycle
    code = result.code
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": _PID, "name": "process_name", "args": {"name": f"Dozen chip "
                                                                          f"({result.cfg.name})"}},
        {"ph": "M", "pid": _PID, "tid": _DISPATCH_TID, "name": "thread_name",
         "args": {"name": "dispatcher"}},
    ]
    for u, name in enumerate(UNIT_NAMES):
        events.append({"ph": "M", "pid": _PID, "tid": u + 1, "name": "thread_name",
                       "args": {"name": f"{name} unit"}})

    def slice_(tid: int, name: str, start: int, end: int, cat: str, **args: Any) -> None:
        events.append({"ph": "X", "pid": _PID, "tid": tid, "name": name, "cat": cat,
                       "ts": start * us, "dur": (end - start) * us,
                       "args": {"start_cycle": start, "end_cycle": end, **args}})

    deltas: list[tuple[int, int, int]] = []  # (cycle, channel, +-1)
    for u, start, end, pc, values in log.runs:
        insn = code[pc]
        if values is not insn.values:
            insn = Instruction(insn.op, values, insn.flags)
        slice_(u + 1, " ".join(format_instruction(insn).split()), start, end, insn.mnemonic,
               pc=pc)
    for u, start, end, pc, pops in log.waits:
        names = ", ".join(CHANNEL_NAMES[ch] for ch in pops)
        slice_(u + 1, f"wait token {names}", start, end, "token_wait", pc=pc)
    for start, end, pc in log.stalls:
        unit = UNIT_NAMES[code[pc].unit] if pc < len(code) else "?"
        slice_(_DISPATCH_TID, f"stall: {unit} queue full", start, end, "dispatch_stall", pc=pc)
    for cycle, pc in log.dispatches:
        slice_(_DISPATCH_TID, " ".join(format_instruction(code[pc]).split()), cycle, cycle + 1,
               "dispatch", pc=pc)
    # Token counter tracks: pops at starts, pushes at completions.
    decoded: dict[int, Decoded] = {}
    for _u, start, end, pc, _values in log.runs:
        dec = decoded.get(pc)
        if dec is None:
            dec = decoded[pc] = Decoded.of(pc, code[pc], result.cfg)
        deltas += [(start, ch, -1) for ch in dec.pops]
        deltas += [(end, ch, +1) for ch in dec.pushes]
    counts = [0] * len(CHANNEL_NAMES)
    # Pushes (step 1) come before pops (step 2) within a cycle.
    for cycle, ch, d in sorted(deltas, key=lambda e: (e[0], -e[2])):
        counts[ch] += d
        events.append({"ph": "C", "pid": _PID, "name": f"tokens {CHANNEL_NAMES[ch]}",
                       "ts": cycle * us, "args": {"count": counts[ch]}})
    # The matrix array's MACs per cycle while each MATMUL runs (0 between them).
    n2 = result.cfg.n * result.cfg.n
    rate: list[tuple[int, int, float]] = []  # (cycle, order, value): ends sort before starts
    for _u, start, end, pc, values in log.runs:
        if code[pc].op.opcode == Op.MATMUL:
            rate += [(start, 1, values["rows"] * n2 / (end - start)), (end, 0, 0.0)]
    for cycle, _, value in sorted(rate):
        events.append({"ph": "C", "pid": _PID, "name": "MACs per cycle", "ts": cycle * us,
                       "args": {"macs": value}})
    for cycle, u, length in log.queues:
        events.append({"ph": "C", "pid": _PID, "name": f"{UNIT_NAMES[u]} queue",
                       "ts": cycle * us, "args": {"instructions": length}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"config": result.cfg.name, "cycles": result.cycles,
                          "clock_mhz": result.cfg.clock_mhz}}


def write_trace(result: Result, path: Path) -> None:
    write_atomic(path, json.dumps(chrome_trace(result)).encode())
