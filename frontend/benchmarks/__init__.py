"""Benchmarks run by `dozen bench` (and `make bench`).

Each module here defines `BENCHMARKS`: a list of callables taking `(cfg, quick: bool)` and
returning a list of result rows, dicts with the keys of `ROW_KEYS`. `row()` builds one.
Performance targets live here, never in unit tests; every figure is reported beside a
reference measured in the same run where one makes sense.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from isa.config import ChipConfig

ROW_KEYS = ("benchmark", "metric", "value", "reference", "ratio", "target", "ok")
Benchmark = Callable[[ChipConfig, bool], list[dict[str, Any]]]


def row(benchmark: str, metric: str, value: Any, reference: float | None = None,
        target: float | None = None, higher_is_better: bool = True) -> dict[str, Any]:
    """One result row; `ratio` is value / reference, `ok` whether the target is met."""
    ratio = value / reference if reference and isinstance(value, (int, float)) else None
    if target is None:
        ok = bool(value) if isinstance(value, bool) else None
        target_text = "true" if isinstance(value, bool) else None
    else:
        ok = value >= target if higher_is_better else value <= target
        target_text = f"{'>=' if higher_is_better else '<='} {target:g}"
    return {"benchmark": benchmark, "metric": metric, "value": value, "reference": reference,
            "ratio": ratio, "target": target_text, "ok": ok}


def discover() -> list[tuple[str, Benchmark]]:
    """(module.function name, benchmark) for every benchmark module in this package."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for bench in getattr(module, "BENCHMARKS", []):
            found.append((f"{info.name}.{bench.__name__}", bench))
    return found
