"""Whole models on the simulator: a residual CNN with pooling (float and int8) and a
transformer block, imported from ONNX, compiled for the chip, held against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from lower_helpers import assert_matches

from frontend.onnx_import import import_model
from frontend.onnx_models import small_cnn, transformer_block
from frontend.quantize import quantize


def _inputs(graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-1, 1, node.shape).astype(np.float32)
            for name, node in graph.inputs.items()}


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_residual_cnn_float(cfg: str) -> None:
    graph = import_model(small_cnn(image=8))
    assert_matches(graph, _inputs(graph), cfg, tol=1e-3)


def test_residual_cnn_int8_bit_exact() -> None:
    graph = import_model(small_cnn(image=8))
    qgraph = quantize(graph, [_inputs(graph, s) for s in range(3)])
    assert_matches(qgraph, _inputs(graph, 7), "default", tol=1e-6)


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_transformer_block_float(cfg: str) -> None:
    graph = import_model(transformer_block(seq=8, dim=16, heads=2))
    assert_matches(graph, _inputs(graph), cfg, tol=2e-3)


def test_resnet_shaped_onnx_int8_bit_exact() -> None:
    """ResNet-50's block structure (one bottleneck per stage) at 32x32, quantised."""
    from frontend.onnx_models import resnet

    graph = import_model(resnet(image=32, blocks=(1, 1, 1, 1)))
    qgraph = quantize(graph, [_inputs(graph, 1)])
    assert_matches(qgraph, _inputs(graph, 2), "default", tol=1e-6)
