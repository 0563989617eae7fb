"""OpenCL C for scheduled Kernels: one work-item per output element (per packed element for
contraction operands); contractions run through the tiled GEMM of `compiler.opencl_gemm`.

Numerics follow `compiler.ir`: integer arithmetic in uint (wraps modulo 2^32, no
undefined behaviour), int8 results wrap to the low byte, integer division truncates with
x/0 = 0, float max/min propagate NaN like numpy, float -> int casts round half to even
and saturate (`convert_int_sat_rte`, NaN -> 0), REQUANT in 64-bit exactly as
`isa.model.NUMERICS`. The code is plain OpenCL 1.2 C: no extensions, no doubles.
"""

from __future__ import annotations

from compiler.ir import Op, RequantArg
from compiler.llvm_opencl_common import Emitter

STORE_TYPE = {"int8": "char", "int32": "int", "float32": "float"}
REG_TYPE = {"int8": "int", "int32": "int", "float32": "float"}


def wrap(expr: str, dtype: str) -> str:
    """An int computed in 32 bits, reduced to `dtype` (int8: sign-extended low byte)."""
    return f"((({expr}) & 255) ^ 128) - 128" if dtype == "int8" else expr


class CEmitter(Emitter):
    """Spells scalar operations in OpenCL C."""

    def __init__(self, index_type: str = "long") -> None:
        super().__init__()
        self.globals: list[str] = []
        self.index_type = index_type  # "int" when every index fits: GPUs do 32 bits faster
        self.suffix = "L" if index_type == "long" else ""

    def stmt(self, ctype: str, expr: str) -> str:
        name = self.fresh()
        self.lines.append(f"  {ctype} {name} = {expr};")
        return name

    def iconst(self, value: int) -> str:
        return f"{int(value)}{self.suffix}"

    def iarith(self, op: str, a: str, b: str) -> str:
        one, zero = self.iconst(1), self.iconst(0)
        if op == "*" and (a == one or b == one):
            return b if a == one else a
        if op == "+" and (a == zero or b == zero):
            return b if a == zero else a
        return self.stmt(self.index_type, f"{a} {op} {b}")

    def icmp(self, op: str, a: str, b: str) -> str:
        return self.stmt("int", f"{a} {op} {b}")

    def band(self, a: str, b: str) -> str:
        return self.stmt("int", f"{a} && {b}")

    def zero(self, dtype: str) -> str:
        return "0.0f" if dtype == "float32" else "0"

    def load(self, slot: int, dtype: str, addr: str, valid: str | None) -> str:
        read = f"p{slot}[{addr}]"
        if valid is not None:
            read = f"({valid} ? ({REG_TYPE[dtype]}){read} : {self.zero(dtype)})"
        return self.stmt(REG_TYPE[dtype], read)

    def apply(self, op: Op, args: list[str], dtypes: list[str], out: str, arg: object) -> str:
        return self.stmt(REG_TYPE[out], self._expr(op, args, dtypes, out, arg))

    def _expr(self, op: Op, a: list[str], dtypes: list[str], out: str, arg: object) -> str:
        src = dtypes[0]
        flt = src == "float32"
        if op is Op.CAST:
            if out == "float32":
                return f"(float){a[0]}"
            if flt:
                return wrap(f"isnan({a[0]}) ? 0 : convert_int_sat_rte({a[0]})", out)
            return wrap(a[0], out)
        if flt:
            x = a[0]
            simple = {Op.NEG: f"-{x}", Op.EXP2: f"exp2({x})", Op.LOG2: f"log2({x})",
                      Op.SIN: f"sin({x})", Op.SQRT: f"sqrt({x})", Op.RECIP: f"1.0f / {x}",
                      Op.RELU: f"({x} > 0.0f || isnan({x})) ? {x} : 0.0f"}
            if op in simple:
                return simple[op]
            y = a[1] if len(a) > 1 else ""
            binary = {Op.ADD: f"{x} + {y}", Op.SUB: f"{x} - {y}", Op.MUL: f"{x} * {y}",
                      Op.DIV: f"{x} / {y}",
                      Op.MAX: f"({x} > {y} || isnan({x})) ? {x} : {y}",
                      Op.MIN: f"({x} < {y} || isnan({x})) ? {x} : {y}",
                      Op.CMPLT: f"({x} < {y}) ? 1.0f : 0.0f",
                      Op.CMPEQ: f"({x} == {y}) ? 1.0f : 0.0f"}
            if op in binary:
                return binary[op]
        else:
            x = a[0]
            y = a[1] if len(a) > 1 else ""
            u = "(uint)"
            ints = {Op.NEG: f"as_int(0u - {u}{x})", Op.RELU: f"max({x}, 0)",
                    Op.ADD: f"as_int({u}{x} + {u}{y})", Op.SUB: f"as_int({u}{x} - {u}{y})",
                    Op.MUL: f"as_int({u}{x} * {u}{y})",
                    Op.DIV: f"({y} == 0) ? 0 : ({y} == -1) ? as_int(0u - {u}{x}) : {x} / {y}",
                    Op.MAX: f"max({x}, {y})", Op.MIN: f"min({x}, {y})",
                    Op.CMPLT: f"({x} < {y}) ? 1 : 0", Op.CMPEQ: f"({x} == {y}) ? 1 : 0"}
            if op in ints:
                return wrap(ints[op], out)
        if op is Op.WHERE:
            cond = f"({a[0]} != 0.0f)" if src == "float32" else f"({a[0]} != 0)"
            return f"{cond} ? {a[1]} : {a[2]}"
        if op is Op.MULACC:
            if out == "float32":
                prod = self.stmt("float", f"{a[0]} * {a[1]}")
                return f"{prod} + {a[2]}"
            return wrap(f"as_int((uint){a[0]} * (uint){a[1]} + (uint){a[2]})", out)
        raise NotImplementedError(f"OpenCL C has no rule for {op.name} on {src}")

    def requant(self, x: str, arg: RequantArg, channel: str) -> str:
        tag = len(self.globals)
        mult = ", ".join(f"{int(v)}L" for v in arg.multiplier)
        shift = ", ".join(str(int(v)) for v in arg.shift)
        self.globals.append(f"__constant long rq_m{tag}[] = {{{mult}}};")
        self.globals.append(f"__constant int rq_s{tag}[] = {{{shift}}};")
        ch = "0" if len(arg.multiplier) == 1 else channel
        p = self.stmt("long", f"(long){x} * rq_m{tag}[{ch}]")
        s = self.stmt("int", f"rq_s{tag}[{ch}]")
        q = self.stmt("long", f"({s} == 0) ? {p} : ({p} >> {s}) + (({p} >> ({s} - 1)) & 1L)")
        y = self.stmt("long", f"clamp({q} + {arg.zp}L, {arg.lo}L, {arg.hi}L)")
        return self.stmt("int", wrap(f"(int){y}", arg.out_dtype))


def params(slots: list[str], out_dtype: str, extra: str = "") -> str:
    """Kernel parameter list: `slots` are store types of the inputs p0.., then `out`."""
    parts = [f"__global const {t}* restrict p{i}" for i, t in enumerate(slots)]
    parts.append(f"__global {STORE_TYPE[out_dtype]}* restrict out")
    parts.append("const long n")
    if extra:
        parts.append(extra)
    return ", ".join(parts)
