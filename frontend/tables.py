"""Plain-text tables for command output, so every command prints results the same way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def format_cell(value: Any) -> str:
    """Numbers get thousands separators and floats four significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return "" if value is None else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                 title: str | None = None) -> str:
    """Render `rows` under `headers`: numeric columns right-aligned, text left-aligned.

    Returns the text with a trailing newline.
    """
    raw = [list(row) for row in rows]
    cells = [[format_cell(v) for v in row] for row in raw]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    right = [bool(raw) and all(_is_number(row[i]) for row in raw) for i in range(len(headers))]

    def line(parts: Sequence[str]) -> str:
        return "  ".join(p.rjust(w) if r else p.ljust(w)
                         for p, w, r in zip(parts, widths, right, strict=True)).rstrip()

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out) + "\n"
