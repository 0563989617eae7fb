"""ChipConfig: the one description of a Dozen chip, read by every layer.

A config comes from a named preset or from a TOML file (`--config chip.toml` or
`--config tiny`). Sizes are in bytes; every SRAM row is `n` lanes of 32 bits, so
the row counts below are derived, never stored.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isa.errors import ConfigError

LANE_BYTES = 4  # every SRAM lane holds 32 bits (int8 values are kept sign-extended)
ROW_FIELD_BITS = 16  # SRAM row addresses in instructions are 16 bits wide
DRAM_ADDR_BITS = 32
DTYPES = ("int8", "int32", "fp32")


@dataclass(frozen=True)
class ChipConfig:
    """Parameters of one chip. Frozen: a config is a value, shared freely."""

    name: str = "default"
    n: int = 16  # the matrix array is n x n; the vector unit has n lanes
    sp_bytes: int = 256 * 1024  # scratchpad SRAM
    acc_bytes: int = 64 * 1024  # accumulator SRAM
    dram_bytes: int = 256 * 1024 * 1024
    dram_latency: int = 64  # cycles from a DMA request to its first byte
    dram_bw: int = 32  # bytes per cycle
    queue_depth: int = 16  # instructions waiting in each unit's queue
    token_depth: int = 8  # the most tokens one dependency channel holds
    clock_mhz: float = 500.0
    dtypes: tuple[str, ...] = field(default=DTYPES)

    def __post_init__(self) -> None:
        if isinstance(self.dtypes, list):  # keep the config hashable whatever the caller passed
            object.__setattr__(self, "dtypes", tuple(self.dtypes))
        self.validate()

    # Derived sizes -----------------------------------------------------------------
    @property
    def row_bytes(self) -> int:
        return self.n * LANE_BYTES

    @property
    def sp_rows(self) -> int:
        return self.sp_bytes // self.row_bytes

    @property
    def acc_rows(self) -> int:
        return self.acc_bytes // self.row_bytes

    @property
    def log2_n(self) -> int:
        return self.n.bit_length() - 1

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.n * self.n

    def validate(self) -> None:
        """Reject a chip that cannot be built or addressed, naming the field at fault."""
        ints = ("n", "sp_bytes", "acc_bytes", "dram_bytes", "dram_latency", "dram_bw",
                "queue_depth", "token_depth")
        for key in ints:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"config {self.name!r}: {key} must be an integer, got {value!r}")
        if not (2 <= self.n <= 256) or self.n & (self.n - 1):
            raise ConfigError(f"config {self.name!r}: n must be a power of two in 2..256, "
                              f"got {self.n}")
        for key in ("sp_bytes", "acc_bytes"):
            size = getattr(self, key)
            if size <= 0 or size % self.row_bytes:
                raise ConfigError(f"config {self.name!r}: {key}={size} is not a positive multiple "
                                  f"of the row size {self.row_bytes} bytes (n * 4)")
            rows = size // self.row_bytes
            if rows > 1 << ROW_FIELD_BITS:
                raise ConfigError(f"config {self.name!r}: {key}={size} gives {rows} rows, "
                                  f"more than the {1 << ROW_FIELD_BITS} a 16-bit row address "
                                  "reaches")
        if self.sp_rows < 2 * self.n:
            raise ConfigError(f"config {self.name!r}: scratchpad holds {self.sp_rows} rows; "
                              f"it needs at least 2n = {2 * self.n} (weights and inputs)")
        if self.acc_rows < self.n:
            raise ConfigError(f"config {self.name!r}: accumulator holds {self.acc_rows} rows; "
                              f"it needs at least n = {self.n}")
        if not (0 < self.dram_bytes <= 1 << DRAM_ADDR_BITS):
            raise ConfigError(f"config {self.name!r}: dram_bytes must be in 1..2^32, "
                              f"got {self.dram_bytes}")
        for key, lo, hi in (("dram_latency", 0, 1 << 16), ("dram_bw", 1, 1 << 16),
                            ("queue_depth", 1, 1024), ("token_depth", 1, 1 << 16)):
            value = getattr(self, key)
            if not lo <= value <= hi:
                raise ConfigError(f"config {self.name!r}: {key} must be in {lo}..{hi}, got {value}")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"config name must be a non-empty string, got {self.name!r}")
        clock_ok = isinstance(self.clock_mhz, (int, float)) and not isinstance(self.clock_mhz, bool)
        if not clock_ok or not 0 < self.clock_mhz <= 10_000:
            raise ConfigError(f"config {self.name!r}: clock_mhz must be in (0, 10000], "
                              f"got {self.clock_mhz!r}")
        unknown = [d for d in self.dtypes if d not in DTYPES]
        if unknown or not self.dtypes:
            raise ConfigError(f"config {self.name!r}: dtypes must be a non-empty subset of "
                              f"{list(DTYPES)}, got {list(self.dtypes)}")

    # Serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["dtypes"] = list(self.dtypes)
        return out

    def derived(self) -> dict[str, Any]:
        return {"row_bytes": self.row_bytes, "sp_rows": self.sp_rows, "acc_rows": self.acc_rows,
                "peak_macs_per_cycle": self.peak_macs_per_cycle,
                "peak_gops": 2 * self.peak_macs_per_cycle * self.clock_mhz / 1000}

    def to_toml(self) -> str:
        lines = []
        for key, value in self.to_dict().items():
            if isinstance(value, str):
                lines.append(f"{key} = {json.dumps(value)}")
            elif isinstance(value, list):
                items = ", ".join(json.dumps(v) for v in value)
                lines.append(f"{key} = [{items}]")
            else:
                lines.append(f"{key} = {value}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str | None = None) -> ChipConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a chip config must be a table of keys, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        base = data.get("preset")
        unknown = sorted(set(data) - known - {"preset"})
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r} "
                              f"(known: {', '.join(sorted(known))})")
        values = dict(data)
        values.pop("preset", None)
        if "dtypes" in values:
            if not isinstance(values["dtypes"], (list, tuple)):
                raise ConfigError(f"config key 'dtypes' must be a list, got {values['dtypes']!r}")
            values["dtypes"] = tuple(values["dtypes"])
        if name is not None and "name" not in values:
            values["name"] = name
        if base is not None and not isinstance(base, str):
            raise ConfigError(f"config key 'preset' must be a preset name, got {base!r}")
        start = preset(base) if base is not None else ChipConfig()
        return dataclasses.replace(start, **values)


PRESETS: dict[str, ChipConfig] = {
    # Small enough for RTL simulation and FPGA tests.
    "tiny": ChipConfig(name="tiny", n=4, sp_bytes=4096, acc_bytes=1024, dram_bytes=1 << 20,
                       dram_latency=4, dram_bw=4, queue_depth=4, token_depth=4, clock_mhz=100.0),
    # In the spirit of VTA and Gemmini: a 16x16 int8 array, 256 KiB scratchpad, 64 KiB accumulator.
    "default": ChipConfig(),
    # A future chip: a 128x128 array with wide DRAM.
    "large": ChipConfig(name="large", n=128, sp_bytes=8 << 20, acc_bytes=2 << 20,
                        dram_bytes=2 << 30, dram_latency=200, dram_bw=256, queue_depth=32,
                        token_depth=16, clock_mhz=1000.0),
}


def preset(name: str) -> ChipConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown config preset {name!r} "
                          f"(presets: {', '.join(PRESETS)})") from None


def load_config(spec: str | Path | None) -> ChipConfig:
    """Resolve `--config`: a preset name, a TOML file path, or None for `default`."""
    if spec is None:
        return PRESETS["default"]
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if not path.suffix == ".toml" and not path.exists():
        raise ConfigError(f"unknown config preset {text!r} (presets: {', '.join(PRESETS)}; "
                          "or give a .toml file)")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if isinstance(data.get("chip"), dict):  # allow an optional [chip] table
        data = data["chip"]
    try:
        return ChipConfig.from_dict(data, name=path.stem)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def is_pow2(x: int) -> bool:
    return x > 0 and not x & (x - 1)


