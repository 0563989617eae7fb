"""The digits CNN demo's pieces: numpy training, ONNX export, int8 quantisation, compile,
and the chip's logits bit-exact with the int8 reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler import reference
from compiler.lower import compile_graph
from frontend.demo_cnn import (
    accuracy,
    export_onnx,
    int8_graph,
    load_digits_split,
    quantize_cnn,
    train,
)
from isa.config import preset
from simulator import Simulator


def test_trained_cnn_runs_int8_on_the_chip(tmp_path: Path) -> None:
    digits = load_digits_split()
    net = train(digits, epochs=3)
    assert accuracy(net.forward(digits.x_test), digits.y_test) > 0.85
    batch = 24
    path = tmp_path / "cnn.onnx"
    export_onnx(net, path, batch)
    x = digits.x_test[:batch]
    for graph in (int8_graph(net, path, digits.x_train[:batch])[0],
                  quantize_cnn(net, digits.x_train[:batch])):
        program = compile_graph(graph, preset("default"))
        got = Simulator(program).run({"image": x}).outputs["logits"]
        want = reference.run(graph, {"image": x})["logits"]
        assert np.array_equal(got, want)
        assert accuracy(got, digits.y_test[:batch]) > 0.8


def test_onnx_export_matches_numpy_forward(tmp_path: Path) -> None:
    import onnxruntime as ort

    digits = load_digits_split()
    net = train(digits, epochs=1)
    path = tmp_path / "cnn.onnx"
    export_onnx(net, path, 5)
    got = ort.InferenceSession(str(path)).run(None, {"image": digits.x_test[:5]})[0]
    assert np.allclose(got, net.forward(digits.x_test[:5]), atol=1e-4)
