"""What the RTL computes today: the integer datapath. Float work is an illegal instruction.

`supported` is the one rule the decoder uses; `isa.model.RTL_UNSUPPORTED` describes the
same set in words for `isa/SPEC.md`, and a test holds the two together.
"""

from __future__ import annotations

from typing import Any

from isa.table import DType, MatType, OpDef, UnaryFn

# Functions whose integer form still produces or consumes fp32.
FLOAT_FUNCTIONS = frozenset({UnaryFn.ITOF, UnaryFn.FTOI})


def supported(op: OpDef, fn: Any, dtype: int) -> bool:
    """True when the RTL implements `op` with function `fn` on lane type `dtype`."""
    if dtype == DType.F32:
        return False
    # Enums of different opcodes share codes (BinaryFn.XOR == UnaryFn.FTOI == 10): compare types.
    return not (op.mnemonic == "unary" and int(fn) in {int(f) for f in FLOAT_FUNCTIONS})


def matmul_supported(dtype: int) -> bool:
    return dtype == MatType.I8
