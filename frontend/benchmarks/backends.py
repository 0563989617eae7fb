"""Benchmarks of the code-generating backends, each against a reference run in the same process.

- OpenCL fp32 GEMM 4096^3 vs cuBLAS SGEMM (torch.matmul, TF32 off): only with an NVIDIA
  GPU, torch and pyopencl present; otherwise one row says it was skipped.
- LLVM fused elementwise chain vs numpy evaluating the same expression: target >= 2x.
- LLVM fp32 GEMM 1024^3 (the whole graph: packing gathers, GEMM, epilogue) vs numpy's
  multithreaded BLAS: target >= 50%.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from compiler import ir
from compiler.backends import run_backend
from compiler.ir import Op
from frontend.benchmarks import row
from isa.config import ChipConfig


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_graph(m: int, k: int, n: int) -> ir.Graph:
    a, b = ir.input_("a", (m, k)), ir.input_("b", (k, n))
    full = (m, k, n)
    prod = ir.binary(Op.MUL, ir.expand(ir.reshape(a, (m, k, 1)), full),
                     ir.expand(ir.reshape(b, (1, k, n)), full))
    return ir.Graph({"a": a, "b": b}, {"c": ir.reshape(ir.reduce(Op.REDUCE_SUM, prod, (1,)),
                                                       (m, n))})


def opencl_gemm_vs_cublas(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    name = "OpenCL fp32 GEMM 4096^3 vs cuBLAS SGEMM"
    try:
        import torch

        from compiler.opencl_gemm import Gemm, time_gemm
        from compiler.opencl_runtime import runtime
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU")
        rt = runtime("NVIDIA")
    except Exception as exc:  # no GPU, no torch or no NVIDIA OpenCL driver here
        skipped = row(name, f"skipped: {str(exc).splitlines()[0][:60]}", None)
        skipped["ok"] = None
        return [skipped]
    n = 1024 if quick else 4096
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")

    def cublas() -> None:
        torch.matmul(a, b)
        torch.cuda.synchronize()

    ref = best_of(cublas, 10)
    seconds, err = time_gemm(Gemm(rt, "float32"), n, n, n, reps=10)
    flops = 2.0 * n ** 3
    return [row(name, f"TFLOP/s ({n}^3, rel err {err:.1e})", flops / seconds / 1e12,
                flops / ref / 1e12, target=0.8 * flops / ref / 1e12)]


def llvm_elementwise_vs_numpy(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    """x*y + x, squared minus y, ReLU, times x, max with y: 8 ops, 2 inputs, 1 output."""
    size = 1 << (18 if quick else 22)
    x, y = ir.input_("x", (size,)), ir.input_("y", (size,))
    e = ir.binary(Op.ADD, ir.binary(Op.MUL, x, y), x)
    e = ir.unary(Op.RELU, ir.binary(Op.SUB, ir.binary(Op.MUL, e, e), y))
    e = ir.binary(Op.MAX, ir.binary(Op.MUL, e, x), y)
    graph = ir.Graph({"x": x, "y": y}, {"z": e})
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal(size, np.float32), "y": rng.standard_normal(size, np.float32)}
    xs, ys = data["x"], data["y"]

    def with_numpy() -> np.ndarray:
        t = xs * ys + xs
        t = np.maximum(t * t - ys, np.float32(0))
        return np.maximum(t * xs, ys)

    got = run_backend("llvm", graph, data)["z"]
    if not np.allclose(got, with_numpy(), rtol=1e-6):
        raise AssertionError("LLVM elementwise result differs from numpy")
    ours = best_of(lambda: run_backend("llvm", graph, data), 5)
    ref = best_of(with_numpy, 5)
    return [row("LLVM fused elementwise chain (8 ops) vs numpy", f"speed-up ({size:,} floats)",
                ref / ours, 1.0, target=2.0)]


def llvm_gemm_vs_numpy(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    n = 256 if quick else 1024
    graph = matmul_graph(n, n, n)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    data = {"a": a, "b": b}
    got = run_backend("llvm", graph, data)["c"]
    if not np.allclose(got, a @ b, rtol=1e-3, atol=1e-3):
        raise AssertionError("LLVM GEMM result differs from numpy")
    ours = best_of(lambda: run_backend("llvm", graph, data), 3)
    ref = best_of(lambda: a @ b, 3)
    flops = 2.0 * n ** 3
    return [row(f"LLVM fp32 GEMM {n}^3 vs numpy BLAS", "GFLOP/s", flops / ours / 1e9,
                flops / ref / 1e9, target=0.5 * flops / ref / 1e9)]


BENCHMARKS = [opencl_gemm_vs_cublas, llvm_elementwise_vs_numpy, llvm_gemm_vs_numpy]
