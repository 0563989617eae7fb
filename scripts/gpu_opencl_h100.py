"""Dozen's OpenCL backend on an NVIDIA GPU: correctness against numpy, GEMM speed against cuBLAS.

Run through scripts/gpu_opencl_h100.sh (it installs pyopencl from .whl/ and registers
NVIDIA's OpenCL driver). Imports only numpy, pyopencl, torch and Dozen's compiler and isa
packages (no amaranth, no cocotb). Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from compiler import ir
from compiler.backends import run_backend
from compiler.ir import Op
from compiler.opencl_gemm import Gemm, GemmTiling, time_gemm
from compiler.opencl_runtime import list_devices, runtime


def table(headers: list[str], rows: list[list[object]], title: str) -> None:
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def check_gemm(rt: object) -> list[list[object]]:
    rng = np.random.default_rng(1)
    rows = []
    for dtype, (b, m, k, n) in [("float32", (1, 100, 70, 130)), ("float32", (3, 257, 129, 64)),
                                ("int32", (2, 67, 300, 45))]:
        gemm = Gemm(rt, dtype)
        if dtype == "float32":
            a = rng.standard_normal((b, m, k), np.float32)
            w = rng.standard_normal((b, k, n), np.float32)
            want = (a.astype(np.float64) @ w).astype(np.float32)
            got = gemm(a, w)
            err = float(np.abs(got - want).max() / np.abs(want).max())
            ok = err < 1e-5
        else:
            a = rng.integers(-128, 128, (b, m, k)).astype(np.int32)
            w = rng.integers(-128, 128, (b, k, n)).astype(np.int32)
            got = gemm(a, w)
            ok = bool((got == (a.astype(np.int64) @ w).astype(np.int32)).all())
            err = 0.0 if ok else float("nan")
        rows.append([f"gemm {dtype} {b}x{m}x{k}x{n}", err, "yes" if ok else "NO"])
    return rows


def _matmul(a: ir.Node, b: ir.Node) -> ir.Node:
    *batch, m, k = a.shape
    full = (*batch, m, k, b.shape[-1])
    prod = ir.binary(Op.MUL, ir.expand(ir.reshape(a, (*batch, m, k, 1)), full),
                     ir.expand(ir.reshape(b, (*batch, 1, k, full[-1])), full))
    return ir.reshape(ir.reduce(Op.REDUCE_SUM, prod, (len(full) - 2,)), (*batch, m, full[-1]))


def sample_graphs() -> list[tuple[str, ir.Graph, dict[str, np.ndarray]]]:
    """A few primitive-op graphs: fp32 and int8 matmuls with epilogues, a windowed conv,
    transcendental elementwise chains and reductions."""
    rng = np.random.default_rng(2)
    cases = []
    x = ir.input_("x", (4, 300, 257))
    w = ir.const(rng.standard_normal((257, 190)).astype(np.float32))
    y = ir.unary(Op.RELU, ir.binary(Op.ADD, _matmul(x, ir.broadcast_to(w, (4, 257, 190))),
                                    ir.const(rng.standard_normal(190).astype(np.float32))))
    cases.append(("fp32 batched matmul + bias + relu", ir.Graph({"x": x}, {"y": y}),
                  {"x": rng.standard_normal((4, 300, 257)).astype(np.float32)}))
    q = ir.input_("q", (96, 500), "int8")
    wq = ir.const(rng.integers(-128, 128, (500, 70)).astype(np.int8))
    acc = _matmul(ir.unary(Op.CAST, q, "int32"), ir.unary(Op.CAST, wq, "int32"))
    arg = ir.RequantArg(rng.integers(1, 1 << 24, 70), rng.integers(10, 30, 70), 5, -128, 127,
                        1, "int8")
    cases.append(("int8 matmul + requant", ir.Graph({"q": q}, {"y": ir.requant(acc, arg)}),
                  {"q": rng.integers(-128, 128, (96, 500)).astype(np.int8)}))
    img = ir.input_("img", (2, 8, 16, 16))
    padded = ir.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = None
    for dy in range(3):
        for dx in range(3):
            win = ir.permute(ir.shrink(padded, ((0, 2), (0, 8), (dy, dy + 16), (dx, dx + 16))),
                             (0, 2, 3, 1))
            tap = ir.const(rng.standard_normal((8, 12)).astype(np.float32))
            term = _matmul(ir.reshape(win, (2 * 16 * 16, 8)), tap)
            conv = term if conv is None else ir.binary(Op.ADD, conv, term)
    cases.append(("fp32 conv3x3 (windows)", ir.Graph({"img": img}, {"y": conv}),
                  {"img": rng.standard_normal((2, 8, 16, 16)).astype(np.float32)}))
    e = ir.input_("e", (64, 1000))
    soft = ir.unary(Op.EXP2, ir.binary(Op.SUB, e, ir.reduce(Op.REDUCE_MAX, e, (1,))))
    soft = ir.binary(Op.DIV, soft, ir.reduce(Op.REDUCE_SUM, soft, (1,)))
    chain = ir.unary(Op.SQRT, ir.binary(Op.ADD, ir.unary(Op.SIN, e), ir.const(np.float32(2))))
    cases.append(("softmax + sin/sqrt chain", ir.Graph({"e": e}, {"soft": soft, "chain": chain}),
                  {"e": rng.standard_normal((64, 1000)).astype(np.float32)}))
    return cases


def check_graphs() -> list[list[object]]:
    """The sample graphs through the OpenCL backend against the numpy reference."""
    rows = []
    for name, graph, inputs in sample_graphs():
        want = run_backend("numpy", graph, inputs)
        got = run_backend("opencl", graph, inputs)
        worst, exact = 0.0, True
        for key, ref in want.items():
            out = got[key]
            exact &= out.dtype == ref.dtype and out.tobytes() == ref.tobytes()
            scale = max(float(np.abs(ref).max()), 1e-30)
            worst = max(worst, float(np.abs(out.astype(np.float64) - ref).max()) / scale)
        is_int = all(r.dtype != np.float32 for r in want.values())
        ok = exact if is_int else worst < 1e-4
        rows.append([name + (" (bit-exact)" if is_int else ""), worst, "yes" if ok else "NO"])
    return rows


def torch_sgemm(n: int, reps: int) -> float:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    a = torch.randn(n, n, device="cuda", dtype=torch.float32)
    b = torch.randn(n, n, device="cuda", dtype=torch.float32)
    for _ in range(3):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(a, b)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return float(np.median(times))


SWEEP = [GemmTiling(64, 128, 8, 8, 8), GemmTiling(128, 128, 16, 8, 8),
         GemmTiling(128, 256, 8, 8, 16), GemmTiling(64, 256, 16, 8, 16),
         GemmTiling(64, 64, 16, 8, 8), GemmTiling(32, 128, 16, 4, 8)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--sweep", action="store_true", help="also time other tilings")
    args = parser.parse_args()

    table(["index", "platform", "device", "kind", "CUs", "local KiB"],
          [[d.index, d.platform, d.name, d.kind, d.compute_units, d.local_mem_kib]
           for d in list_devices()], "OpenCL devices")
    rt = runtime()
    print(f"\nselected: {rt.name}")
    started = time.perf_counter()
    checks = check_gemm(rt) + check_graphs()
    table(["check", "max rel err", "ok"], checks, "Correctness vs numpy")
    failed = any(row[-1] != "yes" for row in checks)

    n = args.size
    flops = 2.0 * n ** 3
    ref = torch_sgemm(n, args.reps)
    rows = [["cuBLAS SGEMM (torch.matmul, TF32 off)", "-", ref * 1e3, flops / ref / 1e12, 1.0, ""]]
    tilings = [Gemm(rt).tiling] + ([t for t in SWEEP if t != Gemm(rt).tiling] if args.sweep else [])
    for tiling in tilings:
        try:
            gemm = Gemm(rt, "float32", tiling)
            seconds, err = time_gemm(gemm, n, n, n, reps=args.reps)
        except Exception as exc:  # a tiling this device cannot build or run
            rows.append([f"Dozen OpenCL {tiling}", "-", float("nan"), 0.0, 0.0, str(exc)[:40]])
            continue
        ok = err < 1e-4
        failed |= not ok
        name = f"Dozen OpenCL {tiling.bm}x{tiling.bn}x{tiling.bk} reg {tiling.tm}x{tiling.tn}"
        rows.append([name,
                     f"{err:.1e}", seconds * 1e3, flops / seconds / 1e12, ref / seconds,
                     "default" if tiling == tilings[0] else ""])
    table(["kernel", "rel err", "ms", "TFLOP/s", "vs cuBLAS", "note"], rows,
          f"fp32 GEMM {n}x{n}x{n} (median of {args.reps})")
    ratio = rows[1][4]
    print(f"\nOpenCL / cuBLAS SGEMM = {ratio:.2%} (target >= 80%); "
          f"total {time.perf_counter() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
