"""Registers the `opencl` backend (see `compiler.opencl_backend`)."""

from compiler.backends import register_backend
from compiler.opencl_backend import run

register_backend("opencl", run)
