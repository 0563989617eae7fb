"""`dozen compile` and `dozen run`, and the `sim` backend: outputs equal the reference,
bad input is one line on stderr with exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler import ir, reference
from compiler.backends import get_backend, load_plugins
from compiler.ir import Op
from compiler.lower import compile_graph
from frontend.cli import main
from isa.config import preset


def _tiny_onnx(path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((4 * 4 * 4, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path.write_bytes(model.SerializeToString())


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    return path


def test_compile_then_run_matches_the_numpy_backend(model: Path, tmp_path: Path, capsys):
    dzn = tmp_path / "tiny.dzn"
    assert main(["compile", str(model), "-o", str(dzn), "--quantize", "int8"]) == 0
    assert dzn.exists() and "instructions" in capsys.readouterr().out
    x = np.random.default_rng(1).uniform(-1, 1, (2, 2, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for backend, target, source in (("sim", "chip.npy", dzn), ("numpy", "ref.npy", model)):
        args = ["run", str(source), "-b", backend, "-i", f"x={tmp_path / 'x.npy'}",
                "-o", f"y={tmp_path / target}"]
        if source == model:
            args += ["--quantize", "int8"]
        assert main(args) == 0
    out = capsys.readouterr().out
    assert "MAC utilisation" in out and "cycles" in out
    assert np.array_equal(np.load(tmp_path / "chip.npy"), np.load(tmp_path / "ref.npy"))


def test_run_float_model_on_sim_with_random_inputs(model: Path, capsys):
    assert main(["run", str(model), "--backend", "sim"]) == 0
    assert "y" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["compile", "missing.onnx"], "model not found"),
    (["run", "missing.dzn"], "file not found"),
    (["run", "x.txt"], "expected an .onnx model or a .dzn program"),
    (["run", "m.onnx", "--backend", "nope"], "unknown backend 'nope'"),
])
def test_bad_input_is_one_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("hello")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_corrupt_onnx_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["compile", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_dzn_on_a_graph_backend_is_refused(model, tmp_path, capsys):
    dzn = tmp_path / "m.dzn"
    assert main(["compile", str(model), "-o", str(dzn)]) == 0
    assert main(["run", str(dzn), "-b", "numpy"]) == 2
    assert "chip backends" in capsys.readouterr().err


def test_sim_backend_registered_and_reports_stats():
    load_plugins("frontend")
    x = ir.input_("x", (3, 5))
    graph = ir.Graph({"x": x}, {"y": ir.unary(Op.RELU, x)})
    stats: dict = {}
    value = np.arange(15, dtype=np.float32).reshape(3, 5) - 7
    got = get_backend("sim")(graph, {"x": value}, cfg="tiny", stats=stats)
    assert np.array_equal(got["y"], reference.run(graph, {"x": value})["y"])
    assert stats["cycles"] > 0 and 0 <= stats["mac_utilisation"] <= 1


def test_an_op_the_chip_cannot_run_is_named():
    from compiler.isa_builder import CompileError

    x = ir.input_("x", (4, 4), "int32")
    graph = ir.Graph({"x": x}, {"y": ir.unary(Op.SIN, ir.unary(Op.CAST, x, "float32"))})
    cfg = preset("tiny")
    program = compile_graph(graph, cfg)  # fp32 SIN runs on the vector unit
    assert program.outputs[0].name == "y"
    int_only = type(cfg)(name="int8only", n=4, sp_bytes=4096, acc_bytes=1024, dram_bytes=1 << 20,
                         dtypes=("int8",))
    with pytest.raises(CompileError, match="float32"):
        compile_graph(graph, int_only)
