"""The backend registry: every way Dozen can run a `Graph`, by name.

A backend is a callable

    backend(graph: compiler.ir.Graph, inputs: dict[str, np.ndarray], **options)
        -> dict[str, np.ndarray]

taking one numpy array per graph input (keyed by input name, shapes and dtypes as in
`graph.inputs`) and returning one array per graph output (keyed by output name, the
output node's shape, dtype int8/int32/float32). Options are backend-specific keywords
(e.g. `cfg=ChipConfig` for the chip backends); a backend ignores options it does not know
only if it says so, and raises a `DozenError` for bad input.

`numpy` (the reference interpreter, `compiler.reference.run`) is always registered.
Other backends register themselves at import with `register_backend(name, fn)`; so that
callers need not know where they live, `get_backend` and `available_backends` first
import every module named `backend_*` in the `compiler` package (e.g.
`compiler/backend_opencl.py`). Backends that need layers the compiler may not import
(the simulator, the RTL) live in `frontend/backend_*.py` and are loaded the same way by
`frontend.tensor` and the command line through `load_plugins("frontend")`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np

from compiler import reference
from compiler.ir import Graph
from isa.errors import InputError

Backend = Callable[..., dict[str, np.ndarray]]

_REGISTRY: dict[str, Backend] = {}
_LOADED: set[str] = set()


class BackendError(InputError):
    """An unknown backend name."""


def register_backend(name: str, fn: Backend) -> Backend:
    """Register (or replace) a backend under `name`; returns `fn` so it works as a decorator."""
    _REGISTRY[name] = fn
    return fn


def load_plugins(package: str = "compiler") -> None:
    """Import every `backend_*` module of `package` once, so they can register."""
    if package in _LOADED:
        return
    _LOADED.add(package)
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("backend_"):
            importlib.import_module(f"{package}.{info.name}")


def available_backends() -> list[str]:
    load_plugins("compiler")
    return sorted(_REGISTRY)


def get_backend(name: str) -> Backend:
    load_plugins("compiler")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r} (available: "
                           f"{', '.join(sorted(_REGISTRY))})") from None


def run_backend(name: str, graph: Graph, inputs: dict[str, np.ndarray],
                **options: Any) -> dict[str, np.ndarray]:
    return get_backend(name)(graph, inputs, **options)


def _numpy_backend(graph: Graph, inputs: dict[str, np.ndarray], **_: Any) -> dict[str, np.ndarray]:
    return reference.run(graph, inputs)


register_backend("numpy", _numpy_backend)
