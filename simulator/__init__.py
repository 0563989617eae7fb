"""Dozen's cycle-level simulator: numpy semantics, an event schedule, counters and traces.

    from simulator import Simulator
    result = Simulator(program).run({"A": a})     # outputs, counters, final DRAM

It imports only `isa`; the RTL is an independent model of the same spec.
"""

from simulator.api import Result, Simulator, read_symbol
from simulator.errors import SimulationError
from simulator.timing import DEFAULT_MAX_CYCLES

__all__ = ["DEFAULT_MAX_CYCLES", "Result", "SimulationError", "Simulator", "read_symbol"]
