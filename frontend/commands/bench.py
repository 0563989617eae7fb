"""`dozen bench`: run the benchmarks in frontend/benchmarks and print one table."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from tqdm import tqdm

from frontend.benchmarks import ROW_KEYS, discover, row
from frontend.tables import format_table
from isa.config import load_config


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "bench", parents=[common], help="run the benchmarks; print value vs reference and target",
        description="Run every benchmark in frontend/benchmarks. Exits with 1 when a target is "
                    "missed.")
    parser.add_argument("--quick", action="store_true", help="smaller problems, for a smoke test")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument("--only", metavar="TEXT", help="run only benchmarks whose name has TEXT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    benches = [(name, b) for name, b in discover() if not args.only or args.only in name]
    rows: list[dict[str, Any]] = []
    for name, bench in tqdm(benches, desc="benchmarks", unit="bench", file=sys.stderr,
                            disable=None, leave=False):
        try:
            rows += bench(cfg, args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            failed = row(name, "error", f"{type(exc).__name__}: {exc}")
            failed["ok"] = False
            rows.append(failed)
    if args.json:
        print(json.dumps([{k: _plain(r.get(k)) for k in ROW_KEYS} for r in rows], indent=2))
    else:
        print(format_table(list(ROW_KEYS), [[_cell(k, r.get(k)) for k in ROW_KEYS] for r in rows],
                           title=f"Dozen benchmarks on chip {cfg.name!r}"
                                 f"{' (quick)' if args.quick else ''}"))
    return 1 if any(r.get("ok") is False for r in rows) else 0


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _cell(key: str, value: Any) -> Any:
    if value is None:
        return ""
    if key == "ok":
        return "yes" if value else "NO"
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, str) and len(value) > _WIDEST:  # the full text is in --json
        return value[:_WIDEST - 3] + "..."
    return value


_WIDEST = 72
