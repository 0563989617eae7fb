"""The `dozen` command line.

Each subcommand lives in its own module under `frontend/commands/` and exposes
`register(subparsers, common)`; this file discovers them, so adding a command
never touches it. Every `DozenError` becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from isa.errors import DozenError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def common_options() -> argparse.ArgumentParser:
    """Options every command takes."""
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PRESET|FILE.toml",
                        help="chip config: a preset (tiny, default, large) or a TOML file")
    return common


def build_parser() -> argparse.ArgumentParser:
    import frontend.commands as commands

    parser = _Parser(prog="dozen", description="Dozen: compile, simulate and verify programs "
                                               "for a 12-op ML accelerator.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = common_options()
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"frontend.commands.{info.name}")
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DozenError as exc:
        sys.stderr.write(f"dozen {args.command}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("dozen: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
