"""Per-layer view of the ResNet-50 conv benchmark: each distinct layer shape compiled and
simulated once, with its utilisation, cycles, instruction mix and busiest unit, sorted by
what it costs the count-weighted mean. `python scripts/conv_layers.py [--quick] [--only I,J]`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from compiler import reference
from compiler.lower import compile_graph
from frontend.benchmarks._nets import conv_layer
from frontend.benchmarks.compiler import _conv_layers
from isa.config import load_config
from simulator import Simulator


def compute_breakdown(program, result) -> dict[str, int]:
    """Busy cycles of the compute unit by opcode (MOVE by function, MATMUL fill apart)."""
    from isa.table import MoveFn
    out: dict[str, int] = {}
    code = result.code or program.code
    for unit, start, end, pc, values in result.log.runs:
        if unit != 1:
            continue
        insn = code[pc]
        name = insn.mnemonic
        if name == "move":
            name = "move." + MoveFn(values["fn"]).name.lower()
        if name == "matmul":
            out["matmul.fill"] = out.get("matmul.fill", 0) + end - start - values["rows"]
            out[name] = out.get(name, 0) + values["rows"]
            continue
        out[name] = out.get(name, 0) + end - start
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--config", default=None)
    ap.add_argument("--only", default=None, help="comma-separated layer indices")
    ap.add_argument("--detail", action="store_true", help="compute-unit cycles by opcode")
    ap.add_argument("--check", action="store_true", help="compare each output with the reference")
    args = ap.parse_args()
    cfg = load_config(args.config)
    size = 64 if args.quick else 224
    layers = _conv_layers(size)
    only = {int(i) for i in args.only.split(",")} if args.only else None
    rows, total, weight = [], 0.0, 0
    for i, ((cin, h, cout, k, stride), count) in enumerate(layers):
        if only is not None and i not in only:
            continue
        rng = np.random.default_rng(0)
        graph, xin = conv_layer(cin, h, cout, k, stride, rng, bias_range=99)
        t0 = time.perf_counter()
        program = compile_graph(graph, cfg)
        t1 = time.perf_counter()
        result = Simulator(program, trace=args.detail).run({"x": xin})
        t2 = time.perf_counter()
        if args.check and not np.array_equal(result.outputs["y"],
                                             reference.run(graph, {"x": xin})["y"]):
            raise SystemExit(f"layer {i}: output differs from the reference")
        rep = result.report()
        util = program.meta["macs"] / (cfg.peak_macs_per_cycle * result.cycles)
        ops = rep["instructions_by_opcode"]
        busy = {u: rep["units"][u]["busy"] for u in ("load", "compute", "store")}
        mm = compute_breakdown(program, result) if args.detail else {}
        rows.append((i, cin, h, cout, k, stride, count, util, result.cycles, busy, ops,
                     t1 - t0, t2 - t1, mm))
        total += util * count
        weight += count
    print(f"{'#':>2} {'cin':>4} {'h':>4} {'cout':>4} k s n {'util':>6} {'loss':>6} {'cycles':>9} "
          f"{'load':>8} {'comp':>8} {'store':>8} {'insns':>6}  c/s   opcodes")
    for (i, cin, h, cout, k, s, count, util, cyc, busy, ops, tc, ts, mm) in rows:
        loss = (1 - util) * count / max(weight, 1)
        mix = " ".join(f"{o}:{c}" for o, c in sorted(ops.items(), key=lambda x: -x[1])[:6])
        print(f"{i:>2} {cin:>4} {h:>4} {cout:>4} {k} {s} {count} {util:6.3f} {loss:6.4f} "
              f"{cyc:>9} {busy['load']:>8} {busy['compute']:>8} {busy['store']:>8} "
              f"{sum(ops.values()):>6} {tc:.1f}/{ts:.1f} {mix}")
        if mm:
            ideal = util * cyc
            print(f"     compute cycles: ideal {ideal:.0f}; " + " ".join(
                f"{k}:{v}" for k, v in sorted(mm.items(), key=lambda x: -x[1])))
    print(f"mean over {weight} layers: {total / max(weight, 1):.4f}")
    if args.detail:  # the points of the mean each cause costs, summed over layers
        lost: dict[str, float] = {}
        for (*_, count, util, cyc, busy, _ops, _tc, _ts, mm) in rows:
            ideal = util * cyc
            parts = dict(mm)
            parts["matmul.lanes"] = parts.pop("matmul", 0) - ideal
            parts["compute idle"] = cyc - busy["compute"]
            for key, v in parts.items():
                lost[key] = lost.get(key, 0.0) + 100 * v / cyc * count / weight
        print("points lost: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                          sorted(lost.items(), key=lambda x: -x[1])))


if __name__ == "__main__":
    main()
