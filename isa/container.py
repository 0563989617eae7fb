"""The `.dzn` program container: code, initial DRAM, symbols and the chip it was built for.

Layout (all integers little-endian):

    magic "DOZN" | u16 major | u16 minor | u32 section count
    then per section: 4-byte tag | u64 payload length | u32 CRC-32 of payload | payload

Sections: CONF (the ChipConfig as JSON), CODE (16-byte instructions), DATA (u64 DRAM
address + bytes; one section per segment), SYMS (named inputs and outputs, JSON),
META (free-form JSON from the compiler). Loading checks every size, CRC and bound,
so a truncated or corrupted file is one clear `ContainerError`.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isa.config import ChipConfig
from isa.encoding import Instruction, decode_program, encode_program
from isa.errors import ConfigError, ContainerError, EncodingError

MAGIC = b"DOZN"
VERSION = (1, 0)
SYMBOL_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int32": np.int32, "float32": np.float32}
_HEADER = struct.Struct("<4sHHI")
_SECTION = struct.Struct("<4sQI")


@dataclass(frozen=True)
class Segment:
    """Initial DRAM contents (weights, constants) at a byte address."""

    addr: int
    data: bytes

    @property
    def end(self) -> int:
        return self.addr + len(self.data)


@dataclass(frozen=True)
class Symbol:
    """A named tensor in DRAM that the host writes (input) or reads (output)."""

    name: str
    kind: str  # "input" or "output"
    addr: int
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None  # quantised tensors: real value = scale * (q - zero_point)
    zero_point: int = 0

    @property
    def nbytes(self) -> int:
        itemsize = np.dtype(SYMBOL_DTYPES[self.dtype]).itemsize
        return int(np.prod(self.shape, dtype=np.int64)) * itemsize

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "addr": self.addr,
                               "shape": list(self.shape), "dtype": self.dtype}
        if self.scale is not None:
            out["scale"] = self.scale
            out["zero_point"] = self.zero_point
        return out


@dataclass
class Program:
    """A whole program: what `dozen asm` and the compiler write and every backend reads."""

    config: ChipConfig
    code: list[Instruction]
    segments: list[Segment] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def symbol(self, name: str) -> Symbol:
        for s in self.symbols:
            if s.name == name:
                return s
        names = ", ".join(s.name for s in self.symbols) or "none"
        raise ContainerError(f"no symbol named {name!r} (symbols: {names})")

    @property
    def inputs(self) -> list[Symbol]:
        return [s for s in self.symbols if s.kind == "input"]

    @property
    def outputs(self) -> list[Symbol]:
        return [s for s in self.symbols if s.kind == "output"]

    def validate(self) -> None:
        """Check segments and symbols against the chip's DRAM; raise ContainerError."""
        dram = self.config.dram_bytes
        spans = sorted((s.addr, s.end) for s in self.segments)
        for (_, e0), (a1, _) in zip(spans, spans[1:], strict=False):
            if a1 < e0:
                raise ContainerError(f"data segments overlap at DRAM address {a1:#x}")
        for s in self.segments:
            if s.addr < 0 or s.end > dram:
                raise ContainerError(f"data segment {s.addr:#x}..{s.end:#x} lies outside DRAM "
                                     f"(0..{dram:#x})")
        seen: set[str] = set()
        for sym in self.symbols:
            if sym.name in seen:
                raise ContainerError(f"symbol {sym.name!r} is defined twice")
            seen.add(sym.name)
            if sym.kind not in ("input", "output"):
                raise ContainerError(f"symbol {sym.name!r}: kind must be input or output, "
                                     f"not {sym.kind!r}")
            if sym.dtype not in SYMBOL_DTYPES:
                raise ContainerError(f"symbol {sym.name!r}: unknown dtype {sym.dtype!r} "
                                     f"(known: {', '.join(SYMBOL_DTYPES)})")
            if any((not isinstance(d, int)) or d < 0 for d in sym.shape):
                raise ContainerError(f"symbol {sym.name!r}: bad shape {sym.shape}")
            if sym.addr < 0 or sym.addr + sym.nbytes > dram:
                raise ContainerError(f"symbol {sym.name!r} at {sym.addr:#x} ({sym.nbytes} bytes) "
                                     f"lies outside DRAM (0..{dram:#x})")

    # Serialisation -------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        self.validate()
        sections = [(b"CONF", _json(self.config.to_dict())), (b"CODE", encode_program(self.code))]
        sections += [(b"DATA", struct.pack("<Q", s.addr) + s.data) for s in self.segments]
        sections.append((b"SYMS", _json([s.to_dict() for s in self.symbols])))
        sections.append((b"META", _json(self.meta)))
        out = [_HEADER.pack(MAGIC, *VERSION, len(sections))]
        for tag, payload in sections:
            out.append(_SECTION.pack(tag, len(payload), zlib.crc32(payload)))
            out.append(payload)
        return b"".join(out)

    def save(self, path: str | Path) -> None:
        """Write atomically: a failed write never leaves a half-written file behind."""
        write_atomic(Path(path), self.to_bytes())

    @classmethod
    def from_bytes(cls, blob: bytes, source: str = "<bytes>") -> Program:
        try:
            return _parse(blob)
        except ContainerError as exc:
            raise ContainerError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Program:
        path = Path(path)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise ContainerError(f"file not found: {path}") from None
        except IsADirectoryError:
            raise ContainerError(f"{path} is a directory, not a .dzn file") from None
        except OSError as exc:
            raise ContainerError(f"cannot read {path}: {exc.strerror}") from None
        return cls.from_bytes(blob, source=str(path))


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _parse(blob: bytes) -> Program:
    if not blob.startswith(MAGIC) and not MAGIC.startswith(blob):
        raise ContainerError(f"not a Dozen program (magic {blob[:4]!r}, expected {MAGIC!r})")
    if len(blob) < _HEADER.size:
        raise ContainerError(f"truncated: {len(blob)} bytes, shorter than the {_HEADER.size}-byte "
                             "header")
    magic, major, minor, count = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ContainerError(f"not a Dozen program (magic {magic!r}, expected {MAGIC!r})")
    if major != VERSION[0]:
        raise ContainerError(f"format version {major}.{minor} is not supported "
                             f"(this Dozen reads {VERSION[0]}.x)")
    pos = _HEADER.size
    sections: list[tuple[bytes, bytes]] = []
    for i in range(count):
        if pos + _SECTION.size > len(blob):
            raise ContainerError(f"truncated: section {i + 1} of {count} header is missing")
        tag, length, crc = _SECTION.unpack_from(blob, pos)
        pos += _SECTION.size
        if pos + length > len(blob):
            raise ContainerError(f"truncated: section {tag.decode(errors='replace')!r} needs "
                                 f"{length} bytes, {len(blob) - pos} remain")
        payload = blob[pos:pos + length]
        pos += length
        if zlib.crc32(payload) != crc:
            raise ContainerError(f"corrupt: section {tag.decode(errors='replace')!r} fails "
                                 "its CRC-32 check")
        sections.append((tag, payload))
    if pos != len(blob):
        raise ContainerError(f"corrupt: {len(blob) - pos} unexpected bytes after the last section")
    tags = [t for t, _ in sections]
    for needed in (b"CONF", b"CODE", b"SYMS", b"META"):
        if tags.count(needed) != 1:
            raise ContainerError(f"corrupt: expected one {needed.decode()} section, "
                                 f"found {tags.count(needed)}")
    unknown = set(tags) - {b"CONF", b"CODE", b"DATA", b"SYMS", b"META"}
    if unknown:
        raise ContainerError(f"corrupt: unknown section {sorted(unknown)[0]!r}")
    by_tag = {t: p for t, p in sections if t != b"DATA"}
    try:
        config = ChipConfig.from_dict(_load_json(by_tag[b"CONF"], "CONF"))
    except ConfigError as exc:
        raise ContainerError(f"embedded chip config is invalid: {exc}") from None
    try:
        code = decode_program(by_tag[b"CODE"])
    except EncodingError as exc:
        raise ContainerError(f"code segment: {exc}") from None
    segments = []
    for tag, payload in sections:
        if tag == b"DATA":
            if len(payload) < 8:
                raise ContainerError("corrupt: DATA section shorter than its address")
            segments.append(Segment(struct.unpack_from("<Q", payload)[0], payload[8:]))
    symbols = []
    for entry in _load_json(by_tag[b"SYMS"], "SYMS"):
        try:
            symbols.append(Symbol(name=str(entry["name"]), kind=str(entry["kind"]),
                                  addr=int(entry["addr"]), shape=tuple(entry["shape"]),
                                  dtype=str(entry["dtype"]), scale=entry.get("scale"),
                                  zero_point=int(entry.get("zero_point", 0))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContainerError(f"corrupt symbol table entry {entry!r}: {exc}") from None
    meta = _load_json(by_tag[b"META"], "META")
    if not isinstance(meta, dict):
        raise ContainerError("corrupt: META is not a JSON object")
    program = Program(config, code, segments, symbols, meta)
    program.validate()
    return program


def _load_json(payload: bytes, tag: str) -> Any:
    try:
        return json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContainerError(f"corrupt: {tag} section is not valid JSON ({exc})") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ContainerError(f"cannot write {path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ContainerError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ContainerError(f"cannot write {path}: {exc.strerror}") from None
        raise
