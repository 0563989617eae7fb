"""`make demo`: a tour of Dozen, run as a list of steps.

Each step is a function taking the shared `DemoContext`; to extend the demo, write a step
and add it to `STEPS` (they run in order, and any failure stops the demo with one line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frontend.cli import main as dozen
from frontend.commands.examples import EXAMPLES_DIR, HEADERS, build_examples, example_rows
from frontend.demo_cnn import step_compile, step_run, step_train
from frontend.demo_sim import step_simulate
from frontend.tables import format_table
from isa.asm import disassemble
from isa.errors import DozenError


@dataclass
class DemoContext:
    """What steps share: where to write files, and results earlier steps leave for later ones."""

    out_dir: Path
    results: dict[str, Any] = field(default_factory=dict)


def step_info(ctx: DemoContext) -> None:
    """The chip (default preset) and its 12-op ISA, exactly as `dozen info` prints them."""
    if dozen(["info"]) != 0:
        raise DozenError("dozen info failed")


def step_examples(ctx: DemoContext) -> None:
    """Assemble every examples/*.s, disassemble it, re-assemble the text, compare bytes."""
    examples = build_examples(EXAMPLES_DIR, ctx.out_dir / "examples")
    ctx.results["examples"] = examples
    print(format_table(HEADERS, example_rows(examples),
                       title=f"Example programs (binaries in {ctx.out_dir / 'examples'})"))
    bad = [e.path.name for e in examples if not e.round_trip_ok]
    if bad:
        raise DozenError(f"asm -> disasm -> asm changed the bytes of {', '.join(bad)}")
    first = next((e for e in examples if e.path.stem == "matmul_tiny"), examples[0])
    print(f"Disassembly of {first.path.name}:\n")
    print(disassemble(first.program))


# The demo, in order: (title, step). Later layers append their steps here.
STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("The chip and its ISA", step_info),
    ("Example programs: assemble, disassemble, round trip", step_examples),
    ("Example programs on the cycle-level simulator", step_simulate),
    ("Train a CNN on the 8x8 digits, export ONNX", step_train),
    ("Quantise to int8 and compile for the chip", step_compile),
    ("Run the test set on the simulated chip", step_run),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frontend.demo", description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path("build/demo"),
                        help="where the demo writes its files (default: build/demo)")
    args = parser.parse_args(argv)
    ctx = DemoContext(args.out_dir)
    for number, (title, step) in enumerate(STEPS, start=1):
        print(f"\n=== {number}/{len(STEPS)} {title} ===\n")
        try:
            step(ctx)
        except DozenError as exc:
            sys.stderr.write(f"demo step {number} ({title}) failed: {exc}\n")
            return exc.exit_code
    print(f"\nDemo finished: {len(STEPS)} steps passed.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
