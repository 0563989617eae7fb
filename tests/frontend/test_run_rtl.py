"""`dozen run --backend rtl` and the `rtl` row of `dozen compare`, through the real CLI: a
compiled integer program runs on the chip's RTL (Amaranth's simulator) with the same
tensor I/O as `sim`, bit-exact; a float program, a wrong config or a model the RTL cannot
run is one line on stderr. Tiny programs on the tiny chip: each RTL run takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compiler import ir, reference
from compiler.ir import Op
from compiler.lower import compile_graph
from frontend.benchmarks._nets import matmul
from frontend.cli import main
from isa.config import preset

RNG = np.random.default_rng(5)


def int8_layer() -> ir.Graph:
    """A quantised dense layer on the matrix array: int8 in, int32 bias, ReLU, REQUANT."""
    x = ir.input_("x", (3, 8), "int8")
    y = matmul(x, ir.const(RNG.integers(-128, 128, (8, 6)).astype(np.int8)))
    y = ir.binary(Op.ADD, y, ir.const(RNG.integers(-900, 900, 6).astype(np.int32)))
    arg = ir.RequantArg(RNG.integers(1 << 10, 1 << 14, 6), RNG.integers(12, 16, 6), zp=-3,
                        axis=1)
    return ir.Graph({"x": x}, {"y": ir.requant(ir.unary(Op.RELU, y), arg)})


def float_layer() -> ir.Graph:
    x = ir.input_("x", (2, 4))
    return ir.Graph({"x": x}, {"y": ir.unary(Op.RELU, ir.binary(Op.MUL, x, x))})


def integer_onnx(path: Path) -> None:
    """An ONNX model with integer inputs and arithmetic: it compiles to an integer program."""
    from onnx import TensorProto, helper, numpy_helper, save

    w = numpy_helper.from_array(RNG.integers(-128, 128, (6, 4)).astype(np.int8), "w")
    b = numpy_helper.from_array(RNG.integers(-500, 500, 4).astype(np.int32), "b")
    i32 = TensorProto.INT32
    nodes = [helper.make_node("Cast", ["x"], ["xi"], to=i32),
             helper.make_node("Cast", ["w"], ["wi"], to=i32),
             helper.make_node("MatMul", ["xi", "wi"], ["h"]),
             helper.make_node("Add", ["h", "b"], ["hb"]), helper.make_node("Relu", ["hb"], ["y"])]
    graph = helper.make_graph(
        nodes, "int_layer", [helper.make_tensor_value_info("x", TensorProto.INT8, [2, 6])],
        [helper.make_tensor_value_info("y", i32, [2, 4])], [w, b])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))


def float_onnx(path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper, save

    w = numpy_helper.from_array(RNG.standard_normal((6, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "float_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w])
    save(helper.make_model(graph), str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("rtl_run")
    layer = int8_layer()
    out = {"graph": layer, "int8": d / "int8.dzn", "float": d / "float.dzn", "x": d / "x.npy",
           "onnx": d / "int.onnx", "float_onnx": d / "float.onnx", "dir": d}
    compile_graph(layer, preset("tiny")).save(out["int8"])
    compile_graph(float_layer(), preset("tiny")).save(out["float"])
    np.save(out["x"], RNG.integers(-128, 128, (3, 8)).astype(np.int8))
    integer_onnx(out["onnx"])
    float_onnx(out["float_onnx"])
    return out


def test_run_dzn_on_rtl_gives_the_sim_outputs_and_counters(files, capsys) -> None:
    d = files["dir"]
    for backend in ("rtl", "sim"):
        assert main(["run", str(files["int8"]), "--backend", backend, "-i", f"x={files['x']}",
                     "-o", f"y={d / f'{backend}.npy'}"]) == 0
        out = capsys.readouterr().out
        assert "MAC utilisation" in out and "DRAM bytes read" in out  # the summary table
        assert ("RTL counter" in out) == (backend == "rtl")
    rtl, sim = np.load(d / "rtl.npy"), np.load(d / "sim.npy")
    want = reference.run(files["graph"], {"x": np.load(files["x"])})["y"]
    assert rtl.dtype == np.int8 and np.array_equal(rtl, sim) and np.array_equal(rtl, want)


def test_compare_includes_the_rtl(files, capsys) -> None:
    assert main(["compare", str(files["onnx"]), "--backends", "numpy,sim,rtl", "--config",
                 "tiny", "--json"]) == 0
    rows = {r["backend"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["rtl"]["ok"] and rows["rtl"]["bit_exact"], rows["rtl"]
    assert rows["rtl"]["cycles"] == rows["sim"]["cycles"] > 0
    assert "tiny chip" in rows["rtl"]["device"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_float_program_on_rtl_is_one_line(files, capsys) -> None:
    assert main(["run", str(files["float"]), "--backend", "rtl"]) == 2
    err = _one_line_error(capsys)
    assert "fp32 datapath" in err and "instruction" in err
    assert main(["run", str(files["float_onnx"]), "--backend", "rtl"]) == 2
    assert "fp32 datapath" in _one_line_error(capsys)


def test_float_model_in_compare_is_a_failed_rtl_row(files, capsys) -> None:
    assert main(["compare", str(files["float_onnx"]), "--backends", "numpy,sim,rtl"]) == 1
    out = capsys.readouterr()
    assert "rtl: error:" in out.out and "fp32 datapath" in out.out
    assert out.err.count("\n") == 1 and "Traceback" not in out.err


@pytest.mark.parametrize("extra,message", [
    (["--config", "default"], "was built for chip 'tiny'"),
    (["--config", "no-such-chip"], "no-such-chip"),
    (["-i", "nope=x.npy"], "no input named 'nope'"),
])
def test_bad_rtl_runs_are_one_line(files, capsys, extra, message) -> None:
    assert main(["run", str(files["int8"]), "--backend", "rtl", *extra]) == 2
    assert message in _one_line_error(capsys)
