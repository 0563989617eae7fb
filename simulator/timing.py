"""The event schedule: dispatcher, unit queues, dependency tokens and cycle-exact timing.

This implements isa/model.py TIMING to the letter. Each cycle t has three steps:
complete (pushes), start (pops, data effect), dispatch. Instead of ticking every
cycle, the loop jumps from one event to the next: after a cycle in which the
dispatcher did something, the next interesting cycle is t+1; otherwise nothing can
change before the earliest completion of a running instruction. So the cost is a
few loop turns per instruction, however many cycles the instructions take.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from isa.asm import format_instruction
from isa.encoding import Instruction
from isa.table import BY_OPCODE, LOOP_MAX_DEPTH, Fault, Op, Unit
from simulator.decode import CHANNEL_NAMES, UNIT_NAMES, Decoded, latency_of, op_facts
from simulator.errors import FaultSignal, SimulationError
from simulator.races import MAX_RACES, Footprint, Race, conflict, footprint
from simulator.semantics import Machine

DEFAULT_MAX_CYCLES = 200_000_000
PROGRESS_EVERY = 2048  # dispatches between progress callbacks

@dataclass
class Counters:
    """Raw event counts of one run; `simulator.report` derives rates and the roofline."""

    cycles: int = 0
    instructions: int = 0
    by_opcode: dict[str, int] = field(default_factory=dict)
    busy: list[int] = field(default_factory=lambda: [0, 0, 0])
    stalled: list[int] = field(default_factory=lambda: [0, 0, 0])  # waiting on a token
    unit_instructions: list[int] = field(default_factory=lambda: [0, 0, 0])
    dispatch_stalled: int = 0  # cycles the dispatcher waited on a full queue
    halt_cycle: int | None = None
    tokens_left: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    # Per static instruction (index = pc): issues, busy cycles, cycles stalled on tokens.
    issues_by_pc: list[int] = field(default_factory=list)
    busy_by_pc: list[int] = field(default_factory=list)
    stalled_by_pc: list[int] = field(default_factory=list)


@dataclass
class TraceLog:
    """Raw timeline: (unit, start, end, pc, values) runs, token waits and dispatcher stalls."""

    runs: list[tuple[int, int, int, int, dict[str, int]]] = field(default_factory=list)
    waits: list[tuple[int, int, int, int, tuple[int, ...]]] = field(default_factory=list)
    stalls: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, pc)
    dispatches: list[tuple[int, int]] = field(default_factory=list)  # LOOP/HALT: (cycle, pc)
    queues: list[tuple[int, int, int]] = field(default_factory=list)  # (cycle, unit, length)


class Schedule:
    """Runs a decoded program on a Machine, cycle-exactly, and counts what happened."""

    def __init__(self, code: list[Instruction], machine: Machine,
                 max_cycles: int = DEFAULT_MAX_CYCLES, trace: bool = False,
                 progress: Callable[[int, int], None] | None = None, check_races: bool = False):
        """`progress(instructions, cycle)` is called every PROGRESS_EVERY dispatches."""
        self.progress = progress
        self.cfg = machine.cfg
        self.machine = machine
        self.code = code
        self._latencies: dict[tuple[int, ...], int] = {}
        self.decoded = [Decoded.of(pc, insn, self.cfg, self._latencies)
                        for pc, insn in enumerate(code)]
        self.max_cycles = max_cycles
        self.counters = Counters()
        self.log = TraceLog() if trace else None
        self.races: list[Race] | None = [] if check_races else None
        self._prints: list[Footprint | None] = [None, None, None]

    # Errors --------------------------------------------------------------------------
    def _fault(self, fault: Fault, message: str, pc: int | None, cycle: int,
               values: dict[str, int] | None = None) -> SimulationError:
        text = None
        if pc is not None and 0 <= pc < len(self.code):
            insn = self.code[pc]
            if values is not None and values is not insn.values:
                insn = Instruction(insn.op, values, insn.flags)
            text = format_instruction(insn)
        return SimulationError(fault, message, pc=pc, cycle=cycle, insn=text)

    # The loop ------------------------------------------------------------------------
    def run(self) -> Counters:  # noqa: C901 - one tight loop, kept in one place for speed
        cfg, machine, decoded, log = self.cfg, self.machine, self.decoded, self.log
        races = self.races
        execute = machine.execute
        qdepth, tdepth = cfg.queue_depth, cfg.token_depth
        ncode = len(decoded)
        counters = self.counters
        by_opcode = [0] * 16
        busy, stalled, unit_count = counters.busy, counters.stalled, counters.unit_instructions
        pc_issues = counters.issues_by_pc = [0] * ncode
        pc_busy = counters.busy_by_pc = [0] * ncode
        pc_stalled = counters.stalled_by_pc = [0] * ncode
        tokens = [0, 0, 0, 0]
        queues: list[deque[tuple[Decoded, dict[str, int], str | None]]] = [deque(), deque(),
                                                                            deque()]
        running: list[tuple[Decoded, dict[str, int]] | None] = [None, None, None]
        ends = [0, 0, 0]
        wait_since: list[int | None] = [None, None, None]
        loops: list[list[Any]] = []  # [start_pc, end_pc, count, iteration, deltas]
        offsets = (0, 0, 0, 0, 0)
        pc = 0
        halted = False
        halt_cycle: int | None = None
        dispatch_stall_since: int | None = None
        last_end = 0
        t = 0
        max_cycles = self.max_cycles
        progress = self.progress
        countdown = PROGRESS_EVERY
        issued = dispatch_count(self.code)
        if issued > max_cycles:  # one dispatch per cycle at most: the limit is certain
            raise SimulationError(Fault.CYCLE_LIMIT, f"the program dispatches {issued:,} "
                                  f"instructions (LOOPs expanded), so it needs more cycles than "
                                  f"the limit of {max_cycles}; raise it with --max-cycles",
                                  cycle=0)

        while True:
            if t > max_cycles:
                raise self._fault(Fault.CYCLE_LIMIT, f"the program ran past the cycle limit "
                                  f"({max_cycles} cycles; raise it with --max-cycles)",
                                  pc if not halted else None, t)
            # 1. Complete: pushes of everything finishing now.
            for u in (0, 1, 2):
                current = running[u]
                if current is not None and ends[u] == t:
                    dec = current[0]
                    for ch in dec.pushes:
                        if tokens[ch] >= tdepth:
                            raise self._fault(Fault.TOKEN_OVERFLOW,
                                              f"push to {CHANNEL_NAMES[ch]} would exceed "
                                              f"token_depth = {tdepth}", dec.pc, t, current[1])
                        tokens[ch] += 1
                    running[u] = None
            # 2. Start: each free unit takes its queue head if its tokens are there.
            for u in (0, 1, 2):
                queue = queues[u]
                if running[u] is not None or not queue:
                    continue
                dec, values, bad = queue[0]
                pops = dec.pops
                if pops:
                    missing = False
                    for ch in pops:
                        if not tokens[ch]:
                            missing = True
                    if missing:
                        if wait_since[u] is None:
                            wait_since[u] = t
                        continue
                for ch in pops:
                    tokens[ch] -= 1
                queue.popleft()
                if log is not None:
                    log.queues.append((t, u, len(queue)))
                since = wait_since[u]
                if since is not None:
                    stalled[u] += t - since
                    pc_stalled[dec.pc] += t - since
                    wait_since[u] = None
                    if log is not None:
                        log.waits.append((u, since, t, dec.pc, pops))
                if bad is not None:
                    raise self._fault(Fault.SRAM_OUT_OF_BOUNDS, bad, dec.pc, t, values)
                try:
                    execute(dec.opcode, values)
                except FaultSignal as sig:
                    raise self._fault(sig.fault, sig.message, dec.pc, t, values) from None
                latency = dec.latency
                if latency is None:
                    latency = latency_of(dec.insn.op, op_facts(dec.opcode), values, cfg,
                                       self._latencies)
                end = t + latency
                running[u] = (dec, values)
                ends[u] = end
                busy[u] += latency
                unit_count[u] += 1
                pc_busy[dec.pc] += latency
                pc_issues[dec.pc] += 1
                if end > last_end:
                    last_end = end
                if log is not None:
                    log.runs.append((u, t, end, dec.pc, values))
                if races is not None:
                    self._check_races(u, dec, values, t, running)
            # 3. Dispatch: at most one instruction (LOOP and HALT included) per cycle.
            dispatched = False
            if not halted:
                if pc >= ncode:
                    raise self._fault(Fault.PC_OUT_OF_RANGE, f"fetch at pc {pc} past the last "
                                      f"instruction (pc {ncode - 1}); the program has no HALT "
                                      "on this path", None, t)
                dec = decoded[pc]
                if dec.illegal is not None:
                    raise self._fault(Fault.ILLEGAL_INSTRUCTION, dec.illegal, pc, t)
                u = dec.unit
                if u != Unit.DISPATCH:
                    queue = queues[u]
                    if len(queue) < qdepth:
                        values = dec.insn.values
                        bad = None
                        if loops and dec.roles:
                            values, bad = _apply_offsets(values, dec.roles, offsets)
                        queue.append((dec, values, bad))
                        if log is not None:
                            log.queues.append((t, u, len(queue)))
                        dispatched = True
                    elif dispatch_stall_since is None:
                        dispatch_stall_since = t
                elif dec.opcode == Op.LOOP:
                    v = dec.insn.values
                    end_pc = pc + 1 + v["body"]
                    if len(loops) >= LOOP_MAX_DEPTH:
                        raise self._fault(Fault.LOOP_NESTING, f"loops nest deeper than "
                                          f"{LOOP_MAX_DEPTH}", pc, t)
                    limit = loops[-1][1] if loops else ncode
                    if end_pc > limit:
                        where = "the enclosing loop body" if loops else "the program"
                        raise self._fault(Fault.LOOP_NESTING, f"the body (pc {pc + 1}.."
                                          f"{end_pc - 1}) runs past the end of {where} "
                                          f"(pc {limit - 1})", pc, t)
                    loops.append([pc + 1, end_pc, v["count"], 0,
                                  (v["d_dram"], v["d_dst"], v["d_src1"], v["d_src2"],
                                   v["d_src3"])])
                    dispatched = True
                    if log is not None:
                        log.dispatches.append((t, pc))
                else:  # HALT
                    halted = True
                    halt_cycle = t
                    dispatched = True
                    if log is not None:
                        log.dispatches.append((t, pc))
                if dispatched:
                    by_opcode[dec.opcode] += 1
                    if progress is not None:
                        countdown -= 1
                        if not countdown:
                            progress(PROGRESS_EVERY, t)
                            countdown = PROGRESS_EVERY
                    if dispatch_stall_since is not None:
                        counters.dispatch_stalled += t - dispatch_stall_since
                        if log is not None:
                            log.stalls.append((dispatch_stall_since, t, pc))
                        dispatch_stall_since = None
                    if not halted:
                        pc += 1
                        # Loop back edges and exits cost nothing.
                        changed = False
                        while loops and pc == loops[-1][1]:
                            frame = loops[-1]
                            frame[3] += 1
                            changed = True
                            if frame[3] < frame[2]:
                                pc = frame[0]
                                break
                            loops.pop()
                        if changed or dec.opcode == Op.LOOP:
                            offsets = _offsets(loops)
            # Next event.
            if dispatched:
                t += 1
                continue
            nxt = -1
            for u in (0, 1, 2):
                if running[u] is not None and (nxt < 0 or ends[u] < nxt):
                    nxt = ends[u]
            if nxt >= 0:
                t = nxt
                continue
            if halted and not (queues[0] or queues[1] or queues[2]):
                break
            if log is not None:  # show the waits that never end in the trace
                for u in (0, 1, 2):
                    since = wait_since[u]
                    if since is not None and queues[u]:
                        log.waits.append((u, since, t, queues[u][0][0].pc, queues[u][0][0].pops))
            raise self._deadlock(queues, tokens, halted, pc, t)

        if progress is not None:
            progress(PROGRESS_EVERY - countdown, t)
        counters.halt_cycle = halt_cycle
        assert halt_cycle is not None
        counters.cycles = max(halt_cycle + 1, last_end)
        counters.instructions = sum(by_opcode)
        counters.by_opcode = {BY_OPCODE[i].mnemonic: c for i, c in enumerate(by_opcode) if c}
        counters.tokens_left = tokens
        return counters

    def _check_races(self, u: int, dec: Decoded, values: dict[str, int], t: int,
                     running: list[tuple[Decoded, dict[str, int]] | None]) -> None:
        """Compare a starting instruction's footprint with what the other units are running."""
        races = self.races
        assert races is not None
        mine = footprint(dec.opcode, values, self.cfg)
        self._prints[u] = mine
        if mine is None or len(races) >= MAX_RACES:
            return
        for other in (0, 1, 2):
            theirs = self._prints[other]
            current = running[other]
            if other == u or current is None or theirs is None:
                continue
            hit = conflict(theirs, mine)
            if hit is not None:
                space, address, kind = hit
                races.append(Race(t, (current[0].pc, dec.pc), (UNIT_NAMES[other], UNIT_NAMES[u]),
                                  space, address, kind))

    def _deadlock(self, queues: list[deque[Any]], tokens: list[int], halted: bool, pc: int,
                  t: int) -> SimulationError:
        parts = []
        first_pc = None
        for u, queue in enumerate(queues):
            if not queue:
                parts.append(f"{UNIT_NAMES[u]} idle (queue empty)")
                continue
            dec, values, _ = queue[0]
            first_pc = dec.pc if first_pc is None else first_pc
            missing = [CHANNEL_NAMES[ch] for ch in dec.pops if not tokens[ch]]
            insn = format_instruction(Instruction(dec.insn.op, values, dec.insn.flags))
            parts.append(f"{UNIT_NAMES[u]} waits at pc {dec.pc} ({' '.join(insn.split())}) "
                         f"for token {', '.join(missing)}")
        if halted:
            parts.append("dispatcher halted")
        else:
            parts.append(f"dispatcher stalled at pc {pc} on a full "
                         f"{UNIT_NAMES[self.decoded[pc].unit]} queue")
        tok = ", ".join(f"{name}={count}" for name, count in zip(CHANNEL_NAMES, tokens,
                                                                    strict=True))
        return SimulationError(Fault.DEADLOCK, f"no unit can proceed: {'; '.join(parts)} "
                                               f"(tokens {tok})", pc=first_pc, cycle=t)


def dispatch_count(code: list[Instruction]) -> int:
    """How many instructions the dispatcher issues (LOOPs expanded) before it halts, falls
    off the end or reaches a LOOP_NESTING fault. Control flow has no data-dependent branch,
    so this is exact, and it takes one pass over the code however many iterations run."""

    def walk(start: int, end: int, depth: int) -> tuple[int, bool]:  # (count, stopped)
        total, pc = 0, start
        while pc < end:
            insn = code[pc]
            if insn.op.opcode == Op.HALT:
                return total + 1, True
            if insn.op.opcode != Op.LOOP:
                total, pc = total + 1, pc + 1
                continue
            body_end = pc + 1 + insn.values["body"]
            if depth >= LOOP_MAX_DEPTH or body_end > end:
                return total + 1, True  # LOOP_NESTING stops the dispatcher here
            count, stopped = walk(pc + 1, body_end, depth + 1)
            if stopped:
                return total + 1 + count, True
            total, pc = total + 1 + insn.values["count"] * count, body_end
        return total, False

    return walk(0, len(code), 0)[0]


def _offsets(loops: list[list[Any]]) -> tuple[int, ...]:
    total = [0, 0, 0, 0, 0]
    for frame in loops:
        i = frame[3]
        if i:
            for k, d in enumerate(frame[4]):
                total[k] += i * d
    return tuple(total)


def _apply_offsets(values: dict[str, int], roles: tuple[tuple[str, int, bool], ...],
                   offsets: tuple[int, ...]) -> tuple[dict[str, int], str | None]:
    """The instruction's fields with LOOP offsets added (the memory bit never moves)."""
    out = dict(values)
    bad = None
    for name, role, is_local in roles:
        off = offsets[role]
        if not off:
            continue
        if is_local:
            row = (values[name] & 0xFFFF) + off
            if not 0 <= row <= 0xFFFF:
                bad = f"{name} row {row} (after LOOP offsets) lies outside every memory"
                row &= 0xFFFF
            out[name] = (values[name] & ~0xFFFF) | row
        else:
            out[name] = values[name] + off
    return out, bad
