"""Textual LLVM IR for scalar operations: the `Emitter` of `compiler.llvm_opencl_common`.

Values are i32 (int8 sign-extended, int32) or float; indices i64; conditions i1. The
per-element code is branch-free (selects, no calls but intrinsics) so that LLVM's loop
vectoriser can turn a kernel's element loop into SIMD code. Numerics as `compiler.ir`:
wrapping integer arithmetic, division guarded against x/0 and INT_MIN/-1 (a trap on
x86), NaN-propagating max/min, `llvm.fptosi.sat` after `llvm.rint` for float -> int casts,
REQUANT in i64.
"""

from __future__ import annotations

from compiler.ir import Op, RequantArg
from compiler.llvm_opencl_common import Emitter

STORE_TYPE = {"int8": "i8", "int32": "i32", "float32": "float"}
REG_TYPE = {"int8": "i32", "int32": "i32", "float32": "float"}
FLOAT_INTRINSICS = {Op.EXP2: "llvm.exp2.f32", Op.LOG2: "llvm.log2.f32",
                    Op.SIN: "llvm.sin.f32", Op.SQRT: "llvm.sqrt.f32"}
NEG_INF = "0xFFF0000000000000"


class IREmitter(Emitter):
    """Spells scalar operations as LLVM IR instructions."""

    def __init__(self) -> None:
        super().__init__()
        self.globals: list[str] = []
        self.declares: set[str] = set()

    def ins(self, text: str) -> str:
        name = f"%{self.fresh()}"
        self.lines.append(f"  {name} = {text}")
        return name

    def iconst(self, value: int) -> str:
        return str(int(value))

    def iarith(self, op: str, a: str, b: str) -> str:
        if op == "*" and (a == "1" or b == "1"):
            return b if a == "1" else a
        if op == "+" and (a == "0" or b == "0"):
            return b if a == "0" else a
        # no nuw/nsw: View offsets and strides may be negative
        name = {"+": "add", "*": "mul", "/": "udiv", "%": "urem"}[op]
        return self.ins(f"{name} i64 {a}, {b}")

    def icmp(self, op: str, a: str, b: str) -> str:
        return self.ins(f"icmp {'slt' if op == '<' else 'sge'} i64 {a}, {b}")

    def band(self, a: str, b: str) -> str:
        return self.ins(f"and i1 {a}, {b}")

    def zero(self, dtype: str) -> str:
        return "0.0" if dtype == "float32" else "0"

    def load(self, slot: int, dtype: str, addr: str, valid: str | None) -> str:
        if valid is not None:
            addr = self.ins(f"select i1 {valid}, i64 {addr}, i64 0")
        st = STORE_TYPE[dtype]
        ptr = self.ins(f"getelementptr inbounds {st}, ptr %p{slot}, i64 {addr}")
        value = self.ins(f"load {st}, ptr {ptr}")
        if st == "i8":
            value = self.ins(f"sext i8 {value} to i32")
        if valid is not None:
            reg = REG_TYPE[dtype]
            value = self.ins(f"select i1 {valid}, {reg} {value}, {reg} {self.zero(dtype)}")
        return value

    def wrap(self, value: str, dtype: str) -> str:
        if dtype != "int8":
            return value
        low = self.ins(f"trunc i32 {value} to i8")
        return self.ins(f"sext i8 {low} to i32")

    def call(self, fn: str, ret: str, args: str) -> str:
        types = ", ".join(a.split()[0] for a in args.split(", "))
        self.declares.add(f"declare {ret} @{fn}({types})")
        return self.ins(f"call {ret} @{fn}({args})")

    def fmax(self, x: str, y: str, pred: str) -> str:
        better = self.ins(f"fcmp {pred} float {x}, {y}")
        nan = self.ins(f"fcmp uno float {x}, {x}")
        take = self.ins(f"or i1 {better}, {nan}")
        return self.ins(f"select i1 {take}, float {x}, float {y}")

    def apply(self, op: Op, a: list[str], dtypes: list[str], out: str, arg: object) -> str:
        src = dtypes[0]
        if op is Op.CAST:
            if out == "float32":
                return a[0] if src == "float32" else self.ins(f"sitofp i32 {a[0]} to float")
            if src == "float32":
                r = self.call("llvm.rint.f32", "float", f"float {a[0]}")
                return self.wrap(self.call("llvm.fptosi.sat.i32.f32", "i32", f"float {r}"), out)
            return self.wrap(a[0], out)
        if op is Op.WHERE:
            cond = (self.ins(f"fcmp une float {a[0]}, 0.0") if src == "float32"
                    else self.ins(f"icmp ne i32 {a[0]}, 0"))
            reg = REG_TYPE[out]
            return self.ins(f"select i1 {cond}, {reg} {a[1]}, {reg} {a[2]}")
        if src == "float32":
            return self.float_op(op, a)
        return self.wrap(self.int_op(op, a), out)

    def float_op(self, op: Op, a: list[str]) -> str:
        x = a[0]
        if op in FLOAT_INTRINSICS:
            return self.call(FLOAT_INTRINSICS[op], "float", f"float {x}")
        if op is Op.NEG:
            return self.ins(f"fneg float {x}")
        if op is Op.RECIP:
            return self.ins(f"fdiv float 1.0, {x}")
        if op is Op.RELU:
            return self.fmax(x, "0.0", "ogt")
        y = a[1]
        simple = {Op.ADD: "fadd", Op.SUB: "fsub", Op.MUL: "fmul", Op.DIV: "fdiv"}
        if op in simple:
            return self.ins(f"{simple[op]} float {x}, {y}")
        if op is Op.MAX:
            return self.fmax(x, y, "ogt")
        if op is Op.MIN:
            return self.fmax(x, y, "olt")
        if op in (Op.CMPLT, Op.CMPEQ):
            cond = self.ins(f"fcmp {'olt' if op is Op.CMPLT else 'oeq'} float {x}, {y}")
            return self.ins(f"select i1 {cond}, float 1.0, float 0.0")
        if op is Op.MULACC:
            prod = self.ins(f"fmul float {x}, {y}")
            return self.ins(f"fadd float {prod}, {a[2]}")
        raise NotImplementedError(f"LLVM has no rule for {op.name} on float32")

    def int_op(self, op: Op, a: list[str]) -> str:
        x = a[0]
        if op is Op.NEG:
            return self.ins(f"sub i32 0, {x}")
        if op is Op.RELU:
            pos = self.ins(f"icmp sgt i32 {x}, 0")
            return self.ins(f"select i1 {pos}, i32 {x}, i32 0")
        y = a[1]
        simple = {Op.ADD: "add", Op.SUB: "sub", Op.MUL: "mul"}
        if op in simple:
            return self.ins(f"{simple[op]} i32 {x}, {y}")
        if op is Op.DIV:
            zero = self.ins(f"icmp eq i32 {y}, 0")
            minus1 = self.ins(f"icmp eq i32 {y}, -1")
            bad = self.ins(f"or i1 {zero}, {minus1}")
            safe = self.ins(f"select i1 {bad}, i32 1, i32 {y}")
            q = self.ins(f"sdiv i32 {x}, {safe}")
            neg = self.ins(f"sub i32 0, {x}")
            q = self.ins(f"select i1 {minus1}, i32 {neg}, i32 {q}")
            return self.ins(f"select i1 {zero}, i32 0, i32 {q}")
        preds = {Op.MAX: "sgt", Op.MIN: "slt"}
        if op in preds:
            take = self.ins(f"icmp {preds[op]} i32 {x}, {y}")
            return self.ins(f"select i1 {take}, i32 {x}, i32 {y}")
        if op in (Op.CMPLT, Op.CMPEQ):
            cond = self.ins(f"icmp {'slt' if op is Op.CMPLT else 'eq'} i32 {x}, {y}")
            return self.ins(f"zext i1 {cond} to i32")
        if op is Op.MULACC:
            prod = self.ins(f"mul i32 {x}, {y}")
            return self.ins(f"add i32 {prod}, {a[2]}")
        raise NotImplementedError(f"LLVM has no rule for {op.name} on integers")

    def requant(self, x: str, arg: RequantArg, channel: str) -> str:
        tag = len(self.globals) // 2
        count = len(arg.multiplier)
        for name, values in ((f"rq_m{tag}", arg.multiplier), (f"rq_s{tag}", arg.shift)):
            body = ", ".join(f"i64 {int(v)}" for v in values)
            self.globals.append(f"@{name} = private unnamed_addr constant [{count} x i64] [{body}]")
        ch = "0" if count == 1 else channel
        mptr = self.ins(f"getelementptr inbounds [{count} x i64], ptr @rq_m{tag}, i64 0, i64 {ch}")
        sptr = self.ins(f"getelementptr inbounds [{count} x i64], ptr @rq_s{tag}, i64 0, i64 {ch}")
        m = self.ins(f"load i64, ptr {mptr}")
        s = self.ins(f"load i64, ptr {sptr}")
        wide = self.ins(f"sext i32 {x} to i64")
        p = self.ins(f"mul i64 {wide}, {m}")
        is0 = self.ins(f"icmp eq i64 {s}, 0")
        sm1 = self.ins(f"sub i64 {s}, 1")
        sm1 = self.ins(f"select i1 {is0}, i64 0, i64 {sm1}")
        high = self.ins(f"ashr i64 {p}, {s}")
        half = self.ins(f"ashr i64 {p}, {sm1}")
        bit = self.ins(f"and i64 {half}, 1")
        rounded = self.ins(f"add i64 {high}, {bit}")
        q = self.ins(f"select i1 {is0}, i64 {p}, i64 {rounded}")
        y = self.ins(f"add i64 {q}, {arg.zp}")
        low = self.ins(f"icmp slt i64 {y}, {arg.lo}")
        y = self.ins(f"select i1 {low}, i64 {arg.lo}, i64 {y}")
        high2 = self.ins(f"icmp sgt i64 {y}, {arg.hi}")
        y = self.ins(f"select i1 {high2}, i64 {arg.hi}, i64 {y}")
        return self.wrap(self.ins(f"trunc i64 {y} to i32"), arg.out_dtype)
