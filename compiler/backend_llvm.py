"""Registers the `llvm` backend (see `compiler.llvm_backend`)."""

from compiler.backends import register_backend
from compiler.llvm_backend import run

register_backend("llvm", run)
