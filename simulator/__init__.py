"""Dozen's cycle-level simulator: numpy semantics, an event schedule, counters and traces.

    from simulator import Simulator
    result = Simulator(program).run({"A": a})     # outputs, counters, final DRAM

Modules: `api` (Simulator, Result), `semantics` (each opcode's data effect in numpy),
`decode` (per-instruction facts: unit, tokens, latency), `timing` (the event schedule
of isa/model.py TIMING), `ticking` (a naive per-cycle model of the same rules, for tests
and the benchmark), `report` (utilisation, bandwidth, roofline), `trace` (Chrome trace
JSON), `races` (units touching the same memory while both are busy), `errors`.
It imports only `isa`; the RTL is an independent model of the same spec.
"""

from simulator.api import Result, Simulator, read_symbol
from simulator.errors import SimulationError
from simulator.timing import DEFAULT_MAX_CYCLES

__all__ = ["DEFAULT_MAX_CYCLES", "Result", "SimulationError", "Simulator", "read_symbol"]
