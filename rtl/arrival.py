"""Estimated arrival times over yosys's ECP5 netlist: the slow paths in a minute, not the
quarter of an hour nextpnr takes to place and route the core.

Each cell adds a fixed delay, its share of routing included (a LUT4 about 1.15 ns,
a carry cell's carry 0.07 ns, a block RAM's output 5.6 ns after the clock: what nextpnr
reports on an 85F). Routing varies with placement, so the figures rank paths and show
what a change did to their depth; the Fmax is nextpnr's (`dozen rtl synth`). On the
core they come within about a tenth of nextpnr's figure for the same path.

A netlist nextpnr has placed (`dozen rtl synth --no-route`: its `placed.json`) is timed
as nextpnr's placer times it (`PlacedNetlist`): each connection by the distance between
its cells' sites, each cell by its logic alone. That names the slow paths of a core too
full to route in a session, where nextpnr prints only the Fmax after placement.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

LUT_NS = 1.15
CARRY_NS = 0.07
CLOCK_TO_Q_NS = {"TRELLIS_FF": 0.5, "DP16KD": 5.6, "TRELLIS_IO": 0.0}
LOGIC_NS = {"PFUMX": 0.3, "L6MUX21": 0.3, "TRELLIS_DPR16X4": 1.6, "MULT18X18D": 4.0,
            "ALU54B": 4.0}
ENDPOINTS = ("TRELLIS_FF", "DP16KD", "MULT18X18D")
_CLOCKS = {"CLK", "CLKA", "CLKB"}
_ASYNC_READ = {"TRELLIS_DPR16X4": "RAD"}


@dataclass(frozen=True)
class Endpoint:
    ns: float
    name: str  # register (bits of one name folded) and input pin

    def __str__(self) -> str:
        return f"{self.ns:5.1f} ns  {self.name}"


class Netlist:
    """One module of a yosys JSON netlist, with the arrival time of every net bit."""

    def __init__(self, path: Path, top: str = "top"):
        module = json.loads(Path(path).read_text())["modules"][top]
        self.cells = module["cells"]
        self.driver: dict[int, tuple[str, str]] = {}
        for name, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) == "output":
                    for bit in bits:
                        if isinstance(bit, int):
                            self.driver[bit] = (name, port)
        self._arrival: dict[int, float] = {}
        self._loads: dict[int, int] | None = None

    def inputs(self, name: str) -> list[tuple[str, int]]:
        """The inputs a cell's outputs follow within a clock (a LUT RAM's read address)."""
        cell = self.cells[name]
        only = _ASYNC_READ.get(cell["type"])
        return [(port, bit) for port, bits in cell["connections"].items()
                if cell["port_directions"].get(port) == "input" and port not in _CLOCKS
                and (only is None or port.startswith(only))
                for bit in bits if isinstance(bit, int)]

    def arrival(self, bit: int) -> float:
        """ns after the clock edge at which `bit` settles (iterative: deep netlists)."""
        stack, open_ = [bit], set()
        while stack:
            top = stack[-1]
            if top in self._arrival or top not in self.driver:
                self._arrival.setdefault(top, 0.0)
                stack.pop()
                continue
            name, port = self.driver[top]
            kind = self.cells[name]["type"]
            if kind in CLOCK_TO_Q_NS:
                self._arrival[top] = CLOCK_TO_Q_NS[kind]
                stack.pop()
                continue
            pending = [b for _, b in self.inputs(name) if b not in self._arrival]
            if pending and top not in open_:
                open_.add(top)
                stack.extend(pending)
                continue
            for b in pending:  # a loop back to a bit still open: counts from 0
                self._arrival.setdefault(b, 0.0)
            self._arrival[top] = self._through(name, port, kind)
            stack.pop()
        return self._arrival[bit]

    def _through(self, name: str, port: str, kind: str) -> float:
        ins = self.inputs(name)
        latest = max((self._arrival[b] for _, b in ins), default=0.0)
        if kind == "CCU2C":
            cin = max((self._arrival[b] for p, b in ins if p == "CIN"), default=0.0)
            rest = max((self._arrival[b] for p, b in ins if p != "CIN"), default=0.0)
            if port == "COUT":
                return max(rest + LUT_NS / 2, cin + CARRY_NS)
            return max(rest + LUT_NS, cin + 0.4 * LUT_NS)
        return latest + LOGIC_NS.get(kind, LUT_NS)

    def wire(self, bit: int, sink: str, port: str) -> float:
        """The connection from `bit`'s driver to `sink`'s `port`: none apart, here (each
        cell's delay counts its share of routing)."""
        return 0.0

    def _inputs_at(self):
        """(ns, cell, input port) for every input of every register, RAM and DSP."""
        for name, cell in self.cells.items():
            if cell["type"] in ENDPOINTS:
                for port, bit in self.inputs(name):
                    yield self.arrival(bit) + self.wire(bit, name, port), name, port

    def endpoints(self) -> list[Endpoint]:
        """The latest input of every register, RAM and DSP, slowest first; the bits of
        one register are folded into one name."""
        worst: dict[str, float] = {}
        for ns, name, port in self._inputs_at():
            key = (re.sub(r"_TRELLIS_FF_Q.*|\.\d+\.\d+$|_\d+$", "", name) + "."
                   + re.sub(r"\d+$", "", port))
            worst[key] = max(worst.get(key, 0.0), ns)
        return sorted((Endpoint(ns, key) for key, ns in worst.items()),
                      key=lambda e: (-e.ns, e.name))

    def loads(self, bit: int) -> int:
        """The cells a net bit reaches."""
        if self._loads is None:
            self._loads = {}
            for cell in self.cells.values():
                for b in {b for _, b in self.inputs_all(cell)}:
                    self._loads[b] = self._loads.get(b, 0) + 1
        return self._loads.get(bit, 0)

    def fanouts(self) -> list[tuple[int, str]]:
        """Registers by the cells their output reaches, most first (the bits of one register
        folded to its busiest). Routing, not logic, is most of a path on a full FPGA, and a
        net with a thousand loads spans the chip: such a register may want copies
        (`lanes.replicas`), where the copies' own inputs are not on a critical path."""
        worst: dict[str, int] = {}
        for name, cell in self.cells.items():
            if cell["type"] == "TRELLIS_FF":
                key = re.sub(r"_TRELLIS_FF_Q.*", "", name)
                worst[key] = max(worst.get(key, 0), self.loads(cell["connections"]["Q"][0]))
        return sorted(((count, key) for key, count in worst.items()),
                      key=lambda e: (-e[0], e[1]))

    @staticmethod
    def inputs_all(cell: dict) -> list[tuple[str, int]]:
        """Every input bit of a cell, clocks and enables included."""
        return [(port, bit) for port, bits in cell["connections"].items()
                if cell["port_directions"].get(port) == "input"
                for bit in bits if isinstance(bit, int)]

    def path_to(self, cell: str) -> list[tuple[float, str, str]]:
        """The latest path into `cell`'s inputs, back to a register: (ns, type, cell)."""
        if cell not in self.cells:
            raise KeyError(cell)
        ins = self.inputs(cell)
        if not ins:
            return []
        bit = max(ins, key=lambda pb: self.arrival(pb[1]))[1]
        path = []
        while bit in self.driver:
            name, _ = self.driver[bit]
            kind = self.cells[name]["type"]
            path.append((self.arrival(bit), kind, name))
            if kind in CLOCK_TO_Q_NS or not self.inputs(name):
                break
            bit = max(self.inputs(name), key=lambda pb: self.arrival(pb[1]))[1]
        return path


# The shape of nextpnr's ECP5 placement-time model (ecp5/arch.cc, `predictDelay`): a
# connection costs a unit times 3, plus 2 a tile of the first five in x and in y, plus 1 a
# tile beyond; a carry chain's own link and a LUT into its flip-flop cost none. The unit is
# fitted to nextpnr 0.11's own figures after placement (speed grade 6, the tiny core): with
# 85 ps its endpoints' median, 90th and 99th percentiles and its slowest path came within
# 1 ns of nextpnr's (9.7/9.1, 16.6/15.5, 22.4/23.1 and 26.8/26.3 ns).
UNIT_PS = 85
PLACED_LOGIC_NS = {"TRELLIS_COMB": 0.24, "TRELLIS_RAMW": 0.0, "DCCA": 0.0,
                   "MULT18X18D": 4.0, "ALU54B": 4.0}
PLACED_CARRY_NS = 0.05
_SITE = re.compile(r"X(\d+)/Y(\d+)/")


def connection_ns(driver: tuple[int, int], sink: tuple[int, int]) -> float:
    """nextpnr's estimate of a placed connection between two sites (x, y)."""
    dx, dy = abs(driver[0] - sink[0]), abs(driver[1] - sink[1])
    units = 3 + max(dx - 5, 0) + max(dy - 5, 0) + 2 * (min(dx, 5) + min(dy, 5))
    return UNIT_PS * units / 1000


class PlacedNetlist(Netlist):
    """A netlist nextpnr placed (`--write` after `--no-route`): arrival times with each
    connection's delay from its cells' sites and each cell's logic delay."""

    def __init__(self, path: Path, top: str = "top"):
        super().__init__(path, top)
        self.site: dict[str, tuple[int, int]] = {}
        for name, cell in self.cells.items():
            found = _SITE.match(cell.get("attributes", {}).get("NEXTPNR_BEL", ""))
            if found:
                self.site[name] = (int(found.group(1)), int(found.group(2)))
        if not self.site:
            raise ValueError("no cell has a placed site (NEXTPNR_BEL)")

    @staticmethod
    def is_placed(path: Path) -> bool:
        """Whether a JSON netlist is nextpnr's placed design (its cells carry sites)."""
        return b"NEXTPNR_BEL" in Path(path).read_bytes()[:4 << 20]

    def wire(self, bit: int, sink: str, port: str) -> float:
        """The placed connection from `bit`'s driver to `sink`'s input `port`."""
        driver = self.driver.get(bit)
        if driver is None:
            return 0.0
        name, out = driver
        if (out == "FCO" and port == "FCI") or (out == "F" and port == "DI"):
            return 0.0
        if self.cells[name]["type"] == "DCCA":  # a global network: nextpnr times it as none
            return 0.0
        if not self.inputs(name):  # a constant (nextpnr's packer ties them to a LUT)
            return 0.0
        a, b = self.site.get(name), self.site.get(sink)
        return 0.0 if a is None or b is None else connection_ns(a, b)

    def inputs(self, name: str) -> list[tuple[str, int]]:
        cell = self.cells[name]
        if cell["type"] == "TRELLIS_COMB":  # a LUT RAM's write side is clocked
            return [(p, b) for p, b in super().inputs(name)
                    if p in ("A", "B", "C", "D", "FCI", "M", "FXA", "FXB", "F1")]
        return super().inputs(name)

    def _steps(self, name: str, out: str) -> list[tuple[float, float, int]]:
        """Each input's way to output `out`: (time there, the cell's logic on it, bit)."""
        steps = []
        for p, b in self.inputs(name):
            logic = (PLACED_CARRY_NS if out == "FCO" and p == "FCI"
                     else PLACED_LOGIC_NS.get(self.cells[name]["type"], 0.24))
            steps.append((self.arrival(b) + self.wire(b, name, p) + logic, logic, b))
        return steps

    def _through(self, name: str, port: str, kind: str) -> float:
        return max((t for t, _, _ in self._steps(name, port)), default=0.0)  # none: a constant

    def path_to(self, cell: str) -> list[tuple[float, str, str]]:
        """The latest path into `cell`, back to a register: (ns at each cell's output, or
        at `cell`'s input first, type, cell)."""
        return [(ns, kind, name) for ns, _, kind, name in self._walk(cell)]

    def _walk(self, cell: str) -> list[tuple[float, float, str, str]]:
        """`path_to` with each cell's logic delay on the path: (ns, logic, type, name)."""
        if cell not in self.cells:
            raise KeyError(cell)
        ins = self.inputs(cell)
        if not ins:
            return []
        port, bit = max(ins, key=lambda pb: self.arrival(pb[1]) + self.wire(pb[1], cell, pb[0]))
        path = [(self.arrival(bit) + self.wire(bit, cell, port), 0.0, "input", f"{cell}.{port}")]
        while bit in self.driver:
            name, out = self.driver[bit]
            kind = self.cells[name]["type"]
            if kind in CLOCK_TO_Q_NS:
                path.append((self.arrival(bit), CLOCK_TO_Q_NS[kind], kind, name))
                break
            steps = self._steps(name, out)
            if not steps:
                break
            _, logic, nxt = max(steps)
            path.append((self.arrival(bit), logic, kind, name))
            bit = nxt
        return path

    def critical(self) -> tuple[str, str, float, float, int]:
        """The slowest path: (start register, end input, logic ns, routing ns, cells)."""
        _, name, _ = max(self._inputs_at())
        path = self._walk(name)
        logic = sum(step[1] for step in path)
        return path[-1][3], path[0][3], logic, path[0][0] - logic, len(path) - 2
