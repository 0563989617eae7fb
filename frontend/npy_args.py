"""`NAME=FILE.npy` command-line arguments: parsed, loaded and saved the same way by every
command that takes tensors (`sim`, `run`, `rtl run`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from isa.container import write_atomic
from isa.errors import InputError


def name_file_pairs(items: list[str], what: str) -> dict[str, Path]:
    """`["x=a.npy", ...]` -> {"x": Path("a.npy")}; a malformed or repeated name is bad input."""
    out: dict[str, Path] = {}
    for item in items:
        name, eq, file = item.partition("=")
        if not eq or not name or not file:
            raise InputError(f"--{what} expects NAME=FILE.npy, got {item!r}")
        if name in out:
            raise InputError(f"--{what} {name} given twice")
        out[name] = Path(file)
    return out


def load_npy(name: str, path: Path) -> np.ndarray:
    """One array from a .npy file, or one clear InputError."""
    try:
        value = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"input {name}: file not found: {path}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"input {name}: {path} is not a readable .npy file ({exc})") from None
    if not isinstance(value, np.ndarray):
        raise InputError(f"input {name}: {path} holds several arrays (.npz); give one .npy")
    return value


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write a .npy atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def load_inputs(items: list[str]) -> dict[str, np.ndarray]:
    """Every `--input NAME=FILE.npy`, loaded."""
    return {name: load_npy(name, path) for name, path in name_file_pairs(items, "input").items()}
