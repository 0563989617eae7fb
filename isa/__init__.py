"""Dozen's ISA: ChipConfig, the 12-opcode table, encoding, assembler and the .dzn container.

This package imports no other Dozen package; every other layer reads it.
"""

from isa.config import PRESETS, ChipConfig, load_config, preset
from isa.container import Program, Segment, Symbol
from isa.encoding import Instruction, decode, encode, local_addr, local_mem, local_row, make
from isa.errors import (
    AsmError,
    ConfigError,
    ContainerError,
    DozenError,
    EncodingError,
    InputError,
)
from isa.table import (
    BY_MNEMONIC,
    BY_OPCODE,
    INSN_BYTES,
    OPS,
    Axis,
    BinaryFn,
    DType,
    Fault,
    Fmt,
    MatType,
    Mem,
    MoveFn,
    Op,
    OpDef,
    ReduceFn,
    SyncUnit,
    TernaryFn,
    UnaryFn,
    Unit,
)

__all__ = [
    "PRESETS", "ChipConfig", "load_config", "preset", "Program", "Segment", "Symbol",
    "Instruction", "decode", "encode", "local_addr", "local_mem", "local_row", "make",
    "AsmError", "ConfigError", "ContainerError", "DozenError", "EncodingError", "InputError",
    "BY_MNEMONIC", "BY_OPCODE", "INSN_BYTES", "OPS", "Axis", "BinaryFn", "DType", "Fault", "Fmt",
    "MatType", "Mem", "MoveFn", "Op", "OpDef", "ReduceFn", "SyncUnit", "TernaryFn", "UnaryFn",
    "Unit",
]
