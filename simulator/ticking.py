"""A naive per-cycle model of the same timing rules, for differential tests and the benchmark.

It ticks every cycle and re-examines every unit, the way a SCALE-Sim-style simulator
does, with none of the event schedule's shortcuts. It shares only the decoded
instruction facts (`Decoded`: latency, pops, pushes) and the data path with
`simulator.timing`, so agreement between the two checks the event jumping, the
queue, token and loop logic. `run_ticks` returns (cycles, [(unit, start, end, pc)])
or raises SimulationError with the same fault as the event schedule would.
"""

from __future__ import annotations

from isa.config import ChipConfig
from isa.encoding import Instruction
from isa.table import LOOP_MAX_DEPTH, Fault, Op, Unit
from simulator.decode import ROLES, Decoded
from simulator.errors import FaultSignal, SimulationError
from simulator.semantics import Machine

Run = tuple[int, int, int, int]  # (unit, start, end, pc)


def run_ticks(code: list[Instruction], cfg: ChipConfig, machine: Machine | None = None,
              max_cycles: int = 1_000_000, stop_after: int | None = None
              ) -> tuple[int, list[Run]]:
    """Simulate cycle by cycle; `stop_after` ends early after that many cycles (for timing)."""
    machine = machine or Machine(cfg)
    decoded = _LazyDecode(code, cfg)
    queues: list[list[tuple[Decoded, dict[str, int], str | None]]] = [[], [], []]
    busy_until = [0, 0, 0]
    running: list[Decoded | None] = [None, None, None]
    tokens = [0, 0, 0, 0]
    loops: list[list[int]] = []  # [start, end, count, iteration, frame index in `deltas`]
    deltas: list[tuple[int, ...]] = []
    runs: list[Run] = []
    pc, halted, halt_cycle, last_end, t = 0, False, 0, 0, 0
    while True:
        if stop_after is not None and t >= stop_after:
            return t, runs
        if t > max_cycles:
            raise SimulationError(Fault.CYCLE_LIMIT, "cycle limit", cycle=t)
        for u in range(3):  # 1. complete
            dec = running[u]
            if dec is not None and busy_until[u] == t:
                for ch in dec.pushes:
                    if tokens[ch] >= cfg.token_depth:
                        raise SimulationError(Fault.TOKEN_OVERFLOW, "overflow", pc=dec.pc, cycle=t)
                    tokens[ch] += 1
                running[u] = None
        for u in range(3):  # 2. start
            if running[u] is None and queues[u]:
                dec, values, bad = queues[u][0]
                if all(tokens[ch] > 0 for ch in dec.pops):
                    for ch in dec.pops:
                        tokens[ch] -= 1
                    queues[u].pop(0)
                    if bad:
                        raise SimulationError(Fault.SRAM_OUT_OF_BOUNDS, bad, pc=dec.pc, cycle=t)
                    try:
                        machine.execute(dec.opcode, values)
                    except FaultSignal as sig:
                        raise SimulationError(sig.fault, sig.message, pc=dec.pc, cycle=t) from None
                    latency = dec.insn.op.cycles(values, cfg)
                    running[u], busy_until[u] = dec, t + latency
                    last_end = max(last_end, t + latency)
                    runs.append((u, t, t + latency, dec.pc))
        progressed = stalled = False
        if not halted:  # 3. dispatch
            if pc >= len(code):
                raise SimulationError(Fault.PC_OUT_OF_RANGE, "pc out of range", cycle=t)
            dec = decoded[pc]
            if dec.illegal:
                raise SimulationError(Fault.ILLEGAL_INSTRUCTION, dec.illegal, pc=pc, cycle=t)
            advance = True
            if dec.unit != Unit.DISPATCH:
                if len(queues[dec.unit]) < cfg.queue_depth:
                    queues[dec.unit].append((dec, *_offset_values(dec, loops, deltas)))
                    progressed = True
                else:
                    advance, stalled = False, True
            elif dec.opcode == Op.LOOP:
                v = dec.insn.values
                end = pc + 1 + v["body"]
                if len(loops) >= LOOP_MAX_DEPTH or end > (loops[-1][1] if loops else len(code)):
                    raise SimulationError(Fault.LOOP_NESTING, "loop nesting", pc=pc, cycle=t)
                deltas.append(tuple(v[f"d_{r}"] for r in ROLES))
                loops.append([pc + 1, end, v["count"], 0, len(deltas) - 1])
            else:
                halted, halt_cycle, advance = True, t, False
            if advance:
                pc += 1
                while loops and pc == loops[-1][1]:
                    loops[-1][3] += 1
                    if loops[-1][3] < loops[-1][2]:
                        pc = loops[-1][0]
                        break
                    loops.pop()
        idle = all(r is None for r in running)
        if halted and idle and not any(queues):
            return max(halt_cycle + 1, last_end), runs
        if idle and any(queues) and not progressed and (halted or stalled):
            raise SimulationError(Fault.DEADLOCK, "deadlock", cycle=t)
        t += 1


class _LazyDecode:
    """Decode on first fetch, so a short prefix of a long program costs only what it runs."""

    def __init__(self, code: list[Instruction], cfg: ChipConfig):
        self.code, self.cfg, self.cache = code, cfg, {}

    def __getitem__(self, pc: int) -> Decoded:
        dec = self.cache.get(pc)
        if dec is None:
            dec = self.cache[pc] = Decoded.of(pc, self.code[pc], self.cfg)
        return dec


def _offset_values(dec: Decoded, loops: list[list[int]], deltas: list[tuple[int, ...]]
                   ) -> tuple[dict[str, int], str | None]:
    values, bad = dict(dec.insn.values), None
    for name, role, is_local in dec.roles:
        off = sum(frame[3] * deltas[frame[4]][role] for frame in loops)
        if is_local:
            row = (values[name] & 0xFFFF) + off
            if not 0 <= row <= 0xFFFF:
                bad, row = f"{name} row {row}", row & 0xFFFF
            values[name] = (values[name] & ~0xFFFF) | row
        else:
            values[name] = values[name] + off
    return values, bad
