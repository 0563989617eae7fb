"""A blocked, vectorised GEMM in LLVM IR: an MR x NR register-tile micro-kernel over packed panels.

A is packed as (batch, M/MR, K, MR) and B as (batch, N/NR, K, NR) (the backend's gather
kernels write those layouts directly), so the micro-kernel streams both operands with
unit stride: per k it loads NR/VW vectors of B, broadcasts MR scalars of A and does
MR*NR/VW vector FMAs into accumulators that stay in registers for all of K. A task is one
MR x NR tile of C; consecutive tasks share the B panel (kept hot in L2) and the task range
is split across cores. The integer flavour multiplies and adds i32 lanes (wrapping, as
the IR says); float uses `llvm.fma`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class GemmPlan:
    """Shape of one (batched) GEMM padded to the micro-kernel's tile."""

    batch: int
    m: int
    n: int
    k: int
    mr: int
    nr: int
    vw: int

    @property
    def mp(self) -> int:
        return -(-self.m // self.mr) * self.mr

    @property
    def np_(self) -> int:
        return -(-self.n // self.nr) * self.nr

    @property
    def tasks(self) -> int:
        return self.batch * (self.mp // self.mr) * (self.np_ // self.nr)

    def a_layout(self) -> list[tuple[str, int, int]]:
        return [("b", self.batch, 1), ("m", self.mp // self.mr, self.mr), ("k", self.k, 1),
                ("m", self.mr, 1)]

    def b_layout(self) -> list[tuple[str, int, int]]:
        return [("b", self.batch, 1), ("n", self.np_ // self.nr, self.nr), ("k", self.k, 1),
                ("n", self.nr, 1)]


@cache
def vector_width() -> int:
    """32-bit lanes per SIMD register of this CPU (16 with AVX-512, else 8)."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    features = llvm.get_host_cpu_features()
    return 16 if features.get("avx512f") else 8


def plan(batch: int, m: int, n: int, k: int) -> GemmPlan:
    vw = vector_width()
    return GemmPlan(batch, m, n, k, mr=6, nr=2 * vw, vw=vw)


def gemm_ir(p: GemmPlan, dtype: str) -> str:
    """LLVM IR for `kern(bufs=[A packed, B packed, C], start, end)` over tasks."""
    t = "float" if dtype == "float32" else "i32"
    vec = f"<{p.vw} x {t}>"
    mp_tiles, np_tiles = p.mp // p.mr, p.np_ // p.nr
    nv = p.nr // p.vw
    lines = [
        "define void @kern(ptr noalias nocapture readonly %bufs, i64 %start, i64 %end) {",
        "entry:",
    ]
    for slot, name in enumerate(("pa", "pb", "pc")):
        lines += [f"  %{name}.p = getelementptr inbounds ptr, ptr %bufs, i64 {slot}",
                  f"  %{name} = load ptr, ptr %{name}.p"]
    lines += ["  %any = icmp slt i64 %start, %end",
              "  br i1 %any, label %task, label %exit",
              "task:",
              "  %t = phi i64 [ %start, %entry ], [ %tnext, %store ]",
              f"  %ip = urem i64 %t, {mp_tiles}",
              f"  %t2 = udiv i64 %t, {mp_tiles}",
              f"  %jp = urem i64 %t2, {np_tiles}",
              f"  %bi = udiv i64 %t2, {np_tiles}",
              f"  %arow = mul i64 %bi, {mp_tiles}",
              "  %apanel = add i64 %arow, %ip",
              f"  %abase = mul i64 %apanel, {p.k * p.mr}",
              f"  %brow = mul i64 %bi, {np_tiles}",
              "  %bpanel = add i64 %brow, %jp",
              f"  %bbase = mul i64 %bpanel, {p.k * p.nr}",
              "  br label %kloop",
              "kloop:",
              "  %k = phi i64 [ 0, %task ], [ %k1, %kloop ]"]
    for i in range(p.mr):
        for j in range(nv):
            lines.append(f"  %c{i}_{j} = phi {vec} [ zeroinitializer, %task ], "
                         f"[ %n{i}_{j}, %kloop ]")
    lines += [f"  %bk = mul i64 %k, {p.nr}", "  %boff = add i64 %bbase, %bk",
              f"  %ak = mul i64 %k, {p.mr}", "  %aoff = add i64 %abase, %ak"]
    for j in range(nv):
        lines += [f"  %bo{j} = add i64 %boff, {j * p.vw}",
                  f"  %bp{j} = getelementptr inbounds {t}, ptr %pb, i64 %bo{j}",
                  f"  %b{j} = load {vec}, ptr %bp{j}, align 4"]
    for i in range(p.mr):
        lines += [f"  %ao{i} = add i64 %aoff, {i}",
                  f"  %ap{i} = getelementptr inbounds {t}, ptr %pa, i64 %ao{i}",
                  f"  %a{i} = load {t}, ptr %ap{i}, align 4",
                  f"  %ai{i} = insertelement {vec} poison, {t} %a{i}, i32 0",
                  f"  %as{i} = shufflevector {vec} %ai{i}, {vec} poison, "
                  f"<{p.vw} x i32> zeroinitializer"]
        for j in range(nv):
            if t == "float":
                lines.append(f"  %n{i}_{j} = call {vec} @llvm.fma.v{p.vw}f32({vec} %as{i}, "
                             f"{vec} %b{j}, {vec} %c{i}_{j})")
            else:
                lines += [f"  %m{i}_{j} = mul {vec} %as{i}, %b{j}",
                          f"  %n{i}_{j} = add {vec} %m{i}_{j}, %c{i}_{j}"]
    lines += ["  %k1 = add i64 %k, 1", f"  %kdone = icmp eq i64 %k1, {p.k}",
              "  br i1 %kdone, label %store, label %kloop", "store:",
              f"  %cb = mul i64 %bi, {p.mp}", f"  %cm = mul i64 %ip, {p.mr}",
              "  %crow0 = add i64 %cb, %cm", f"  %cn = mul i64 %jp, {p.nr}"]
    for i in range(p.mr):
        lines += [f"  %crow{i}x = add i64 %crow0, {i}",
                  f"  %coff{i} = mul i64 %crow{i}x, {p.np_}"]
        for j in range(nv):
            lines += [f"  %cc{i}_{j} = add i64 %coff{i}, %cn",
                      f"  %cd{i}_{j} = add i64 %cc{i}_{j}, {j * p.vw}",
                      f"  %cp{i}_{j} = getelementptr inbounds {t}, ptr %pc, i64 %cd{i}_{j}",
                      f"  store {vec} %n{i}_{j}, ptr %cp{i}_{j}, align 4"]
    lines += ["  %tnext = add i64 %t, 1", "  %tdone = icmp eq i64 %tnext, %end",
              "  br i1 %tdone, label %exit, label %task", "exit:", "  ret void", "}"]
    if t == "float":
        lines.append(f"declare {vec} @llvm.fma.v{p.vw}f32({vec}, {vec}, {vec})")
    return "\n".join(lines) + "\n"
