"""`dozen compare` and `compare_graph`: agreement, disagreement and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from compiler import ir
from compiler.backends import register_backend, run_backend
from compiler.ir import Op
from frontend.cli import main
from frontend.commands.compare import compare_graph, errors, random_inputs


def small_graph() -> ir.Graph:
    x = ir.input_("x", (3, 8))
    q = ir.input_("q", (3, 8), "int8")
    y = ir.reduce(Op.REDUCE_SUM, ir.unary(Op.EXP2, ir.binary(Op.MUL, x, x)), (1,))
    z = ir.binary(Op.ADD, q, q)
    return ir.Graph({"x": x, "q": q}, {"y": y, "z": z})


def test_backends_agree_with_the_reference() -> None:
    graph = small_graph()
    rows = compare_graph(graph, random_inputs(graph), ["numpy", "llvm", "opencl"])
    by_name = {r["backend"]: r for r in rows}
    assert by_name["numpy"]["bit_exact"] and by_name["numpy"]["max_abs_err"] == 0
    for name in ("llvm", "opencl"):
        assert by_name[name]["ok"], by_name[name]
        assert by_name[name]["device"]
        assert by_name[name]["wall_ms"] > 0


def test_a_wrong_backend_is_caught() -> None:
    def off_by_one(graph, inputs, **_):  # a backend with a planted integer error
        out = run_backend("numpy", graph, inputs)
        out["z"] = (out["z"].astype(np.int16) + 1).astype(np.int8)
        return out

    register_backend("test_off_by_one", off_by_one)
    graph = small_graph()
    (row,) = compare_graph(graph, random_inputs(graph), ["test_off_by_one"])
    assert not row["ok"] and not row["bit_exact"] and row["max_abs_err"] >= 1


def test_a_crashing_backend_is_a_failed_row() -> None:
    def broken(graph, inputs, **_):
        raise RuntimeError("driver fell over")

    register_backend("test_broken", broken)
    graph = small_graph()
    (row,) = compare_graph(graph, random_inputs(graph), ["test_broken"])
    assert not row["ok"] and "driver fell over" in row["error"]


def test_error_measures() -> None:
    ref = {"a": np.array([1.0, 2.0, np.nan], np.float32)}
    assert errors(ref, {"a": ref["a"].copy()}) == (0.0, 0.0, True, True)
    close = {"a": np.array([1.0, 2.0001, np.nan], np.float32)}
    abs_err, rel, exact, ok = errors(ref, close)
    assert not exact and ok and 0 < rel < 1e-3
    assert errors(ref, {"a": np.array([1.0, 2.0, 0.0], np.float32)})[3] is False
    assert errors(ref, {"a": np.zeros(2, np.float32)})[3] is False  # wrong shape


@pytest.mark.parametrize("argv, text", [
    (["compare", "nope.onnx"], "no such file"),
    (["compare", "nope.onnx", "--backends", "numpy,warp"], "unknown backend 'warp'"),
    (["compare", "nope.onnx", "--backends", "numpy,opencl", "--device", "9:9"],
     "no OpenCL device matches '9:9'"),
])
def test_bad_input_is_one_line(argv: list[str], text: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert text in err and err.count("\n") == 1


def test_dzn_needs_its_source_graph(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from isa.config import preset
    from isa.container import Program
    from isa.encoding import make

    path = tmp_path / "m.dzn"
    Program(preset("tiny"), [make("halt")]).save(path)
    assert main(["compare", str(path)]) == 2
    assert "source model" in capsys.readouterr().err
    path.write_bytes(b"DOZN")  # truncated
    assert main(["compare", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def _onnx_model(path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 5)).astype(
        np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
                              [w])
    onnx.save(helper.make_model(graph), str(path))


def test_compare_an_onnx_model(tmp_path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("frontend.onnx_import")
    path = tmp_path / "m.onnx"
    _onnx_model(path)
    assert main(["compare", str(path), "--backends", "numpy,llvm,opencl", "--json"]) == 0
    assert '"backend": "opencl"' in capsys.readouterr().out


def test_compare_a_compiled_int8_program(tmp_path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("frontend.onnx_import")
    pytest.importorskip("frontend.quantize")
    path = tmp_path / "m.onnx"
    _onnx_model(path)
    dzn = tmp_path / "m.dzn"
    assert main(["compile", str(path), "-o", str(dzn), "--quantize", "int8"]) == 0
    capsys.readouterr()
    code = main(["compare", str(dzn), "--quantize", "int8", "--backends",
                 "numpy,sim,llvm,opencl"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sim" in out and "cycles" in out
