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


def check_graphs(device: str) -> list[list[object]]:
    """A few primitive-op graphs through the OpenCL backend against the numpy reference."""
    try:
        from compiler.backend_checks import run_checks
    except ImportError:
        return []
    return run_checks("opencl", device)


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


SWEEP = [GemmTiling(128, 128, 16, 8, 8), GemmTiling(128, 128, 8, 8, 8),
         GemmTiling(128, 64, 16, 8, 8), GemmTiling(64, 128, 16, 8, 8),
         GemmTiling(128, 256, 16, 8, 16), GemmTiling(64, 64, 16, 8, 8)]


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
    checks = check_gemm(rt) + check_graphs(rt.name)
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
