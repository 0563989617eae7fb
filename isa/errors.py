"""Error types shared by every layer, so the command line can turn any of them into one line."""

from __future__ import annotations


class DozenError(Exception):
    """Base of every error Dozen reports to a user; `exit_code` is what the CLI exits with."""

    exit_code = 2


class InputError(DozenError):
    """Bad input from a user: a file, a config, a program text. Exit code 2."""


class ConfigError(InputError):
    """An unknown preset, an unknown key, or a chip that cannot exist."""


class EncodingError(InputError):
    """A field out of range, an illegal opcode, reserved bits set."""


class AsmError(InputError):
    """An assembler error, located at file:line:column."""

    def __init__(self, message: str, file: str = "<input>", line: int = 0, col: int = 0):
        self.file, self.line, self.col, self.bare = file, line, col, message
        super().__init__(f"{file}:{line}:{col}: {message}")


class ContainerError(InputError):
    """A .dzn file that is truncated, corrupt, or from another format version."""
