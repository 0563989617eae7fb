"""The main demo: a small CNN trained on scikit-learn's 8x8 digits, run int8 on the chip.

Steps: train in numpy (seconds), export to ONNX with onnx.helper, import and quantise to
int8, compile for the chip, run the held-out test set on the cycle-level simulator, and
compare the float accuracy with the int8-on-chip accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHANNELS = 16
CLASSES = 10


@dataclass
class Digits:
    x_train: np.ndarray  # (N, 1, 8, 8) float32 in [0, 1]
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int = 0) -> Digits:
    """The bundled 8x8 digits (no download), scaled to [0, 1], 80/20 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    tr, te = order[:cut], order[cut:]
    return Digits(x[tr], y[tr], x[te], y[te])


# A numpy CNN: conv3x3(1->C, pad 1) -> ReLU -> maxpool 2 -> flatten -> dense(C*16 -> 10) ------

def _im2col(x: np.ndarray) -> np.ndarray:
    """(N, 1, 8, 8) -> (N, 64, 9) patches of the zero-padded image."""
    xp = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, i:i + 8, j:j + 8] for i in range(3) for j in range(3)], axis=-1)
    return cols.reshape(len(x), 64, 9)


@dataclass
class CNN:
    w1: np.ndarray  # (C, 1, 3, 3)
    b1: np.ndarray  # (C,)
    w2: np.ndarray  # (C*16, 10)
    b2: np.ndarray  # (10,)

    def forward(self, x: np.ndarray, keep: bool = False):
        cols = _im2col(x)  # (N, 64, 9)
        z = cols @ self.w1.reshape(CHANNELS, 9).T + self.b1  # (N, 64, C)
        a = np.maximum(z, 0).reshape(len(x), 8, 8, CHANNELS)
        p = a.reshape(len(x), 4, 2, 4, 2, CHANNELS).max(axis=(2, 4))  # (N, 4, 4, C)
        flat = p.transpose(0, 3, 1, 2).reshape(len(x), -1)  # NCHW flatten
        logits = flat @ self.w2 + self.b2
        return (logits, (cols, z, a, p, flat)) if keep else logits


def train(d: Digits, epochs: int = 15, seed: int = 0) -> CNN:
    """Adam on cross-entropy; about two seconds on a laptop core."""
    rng = np.random.default_rng(seed)
    net = CNN(rng.normal(0, 0.5, (CHANNELS, 1, 3, 3)).astype(np.float32),
              np.zeros(CHANNELS, np.float32),
              rng.normal(0, 0.1, (CHANNELS * 16, CLASSES)).astype(np.float32),
              np.zeros(CLASSES, np.float32))
    params = [net.w1, net.b1, net.w2, net.b2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, step, batch = 0.01, 0, 64
    for _ in range(epochs):
        order = rng.permutation(len(d.x_train))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            x, y = d.x_train[idx], d.y_train[idx]
            logits, (cols, z, a, p, flat) = net.forward(x, keep=True)
            e = np.exp(logits - logits.max(1, keepdims=True))
            prob = e / e.sum(1, keepdims=True)
            g = prob
            g[np.arange(len(y)), y] -= 1
            g /= len(y)
            gw2 = flat.T @ g
            gb2 = g.sum(0)
            gflat = g @ net.w2.T
            gp = gflat.reshape(len(x), CHANNELS, 4, 4).transpose(0, 2, 3, 1)
            a6 = a.reshape(len(x), 4, 2, 4, 2, CHANNELS)
            mask = a6 == p[:, :, None, :, None, :]
            mask = mask / np.maximum(mask.sum(axis=(2, 4), keepdims=True), 1)
            ga = (mask * gp[:, :, None, :, None, :]).reshape(len(x), 64, CHANNELS)
            gz = ga * (z > 0)
            gw1 = np.einsum("npk,npc->ck", cols, gz).reshape(CHANNELS, 1, 3, 3)
            gb1 = gz.sum((0, 1))
            step += 1
            for j, (prm, grd) in enumerate(zip(params, (gw1, gb1, gw2, gb2), strict=True)):
                m[j] = 0.9 * m[j] + 0.1 * grd
                v[j] = 0.999 * v[j] + 0.001 * grd * grd
                mh, vh = m[j] / (1 - 0.9 ** step), v[j] / (1 - 0.999 ** step)
                prm -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
    return net


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


def export_onnx(net: CNN, path: Path, batch: int) -> None:
    """The trained CNN as an ONNX model (opset 13), built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(net.w1, "w1"), numpy_helper.from_array(net.b1, "b1"),
             numpy_helper.from_array(net.w2, "w2"), numpy_helper.from_array(net.b2, "b2")]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], axis=1),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="dozen-demo")
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


# int8 on the chip -------------------------------------------------------------------------

def requant_params(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multiplier (int32) and shift with real ~= multiplier / 2^shift, per channel."""
    real = np.asarray(real, np.float64).reshape(-1)
    exp = np.floor(np.log2(np.maximum(real, 1e-30))).astype(np.int64)
    shift = np.clip(30 - exp, 0, 63)
    mult = np.round(real * np.exp2(shift)).astype(np.int64)
    return np.clip(mult, 0, (1 << 31) - 1), shift


def quantize_cnn(net: CNN, calib: np.ndarray):
    """The CNN as an int8 primitive-op graph: symmetric per-channel weights, activation
    scales from calibration; float image in, float logits out (quantise and dequantise on
    the chip). Used when the ONNX importer and quantiser are not available."""
    from compiler import ir
    from compiler.ir import Op
    from frontend.benchmarks._nets import conv2d, matmul

    n = len(calib)
    s_in = 1.0 / 127.0  # images are in [0, 1]
    w1 = net.w1.reshape(CHANNELS, -1)
    s_w1 = np.maximum(np.abs(w1).max(1), 1e-8) / 127.0
    _, (_, z, _, _, flat) = net.forward(calib, keep=True)
    s_a1 = max(float(np.maximum(z, 0).max()), 1e-8) / 127.0
    s_w2 = np.maximum(np.abs(net.w2).max(0), 1e-8) / 127.0
    x = ir.input_("image", (n, 1, 8, 8), "float32")
    xq = ir.binary(Op.MUL, x, ir.const(np.float32(1.0 / s_in)))
    xq = ir.binary(Op.MIN, ir.binary(Op.MAX, xq, ir.const(np.float32(-128))),
                   ir.const(np.float32(127)))
    xq = ir.unary(Op.CAST, ir.unary(Op.CAST, xq, "int32"), "int8")
    w1q = np.round(net.w1 / s_w1[:, None, None, None]).astype(np.int8)
    c1 = conv2d(xq, ir.const(w1q), 1, 1)
    b1q = np.round(net.b1 / (s_in * s_w1)).astype(np.int32).reshape(1, CHANNELS, 1, 1)
    c1 = ir.binary(Op.ADD, c1, ir.const(b1q))
    m1, sh1 = requant_params(s_in * s_w1 / s_a1)
    a1 = ir.requant(c1, ir.RequantArg(m1, sh1, zp=0, lo=0, hi=127, axis=1))
    from frontend.benchmarks._nets import pool
    p1 = ir.reshape(ir.reduce(Op.REDUCE_MAX, pool(a1, (2, 2), (2, 2)), (4, 5)),
                    (n, CHANNELS, 4, 4))
    f1 = ir.reshape(p1, (n, CHANNELS * 16))
    w2q = np.round(net.w2 / s_w2[None, :]).astype(np.int8)
    acc = matmul(f1, ir.const(w2q))
    b2q = np.round(net.b2 / (s_a1 * s_w2)).astype(np.int32)
    acc = ir.binary(Op.ADD, acc, ir.const(b2q))
    logits = ir.binary(Op.MUL, ir.unary(Op.CAST, acc, "float32"),
                       ir.const((s_a1 * s_w2).astype(np.float32)))
    return ir.Graph({"image": x}, {"logits": logits})


def int8_graph(net: CNN, onnx_path: Path, calib: np.ndarray):
    """Import the exported ONNX model and quantise it with the frontend when it is
    available; otherwise quantise the trained weights directly (same scheme)."""
    try:
        from frontend.onnx_import import load_onnx
        from frontend.quantize import quantize
    except ImportError:
        return quantize_cnn(net, calib), "demo quantiser (ONNX importer not installed)"
    graph = load_onnx(str(onnx_path))
    batch = graph.inputs["image"].shape[0]
    samples = [{"image": calib[i:i + batch]} for i in range(0, len(calib) - batch + 1, batch)]
    return quantize(graph, samples or [{"image": calib[:batch]}]), "ONNX import + int8 quantiser"


# Demo steps (see frontend/demo.py) -----------------------------------------------------------

def step_train(ctx) -> None:
    """Train the CNN on the digits (numpy, seconds) and export it to ONNX."""
    from frontend.tables import format_table

    digits = load_digits_split()
    net, seconds = timed(train, digits)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = ctx.out_dir / "digits_cnn.onnx"
    export_onnx(net, onnx_path, batch=len(digits.x_test))
    acc = accuracy(net.forward(digits.x_test), digits.y_test)
    ctx.results.update(digits=digits, net=net, onnx=onnx_path, float_acc=acc)
    print(format_table(["", ""], [
        ("data", f"sklearn digits 8x8: {len(digits.x_train)} train, {len(digits.x_test)} test"),
        ("model", f"conv3x3(1->{CHANNELS}) relu maxpool2 dense({CHANNELS * 16}->10)"),
        ("training", f"{seconds:.1f} s, numpy"), ("float test accuracy", f"{acc:.2%}"),
        ("ONNX model", str(onnx_path))], title="Training"))


def step_compile(ctx) -> None:
    """Quantise to int8 and compile the whole test batch for the default chip."""
    from compiler.lower import compile_graph
    from frontend.tables import format_table
    from isa.config import preset

    digits, net = ctx.results["digits"], ctx.results["net"]
    graph, how = int8_graph(net, ctx.results["onnx"], digits.x_train[:len(digits.x_test)])
    cfg = preset("default")
    program, seconds = timed(compile_graph, graph, cfg)
    path = ctx.out_dir / "digits_cnn.dzn"
    program.save(path)
    ctx.results.update(graph=graph, program=program, cfg=cfg)
    print(format_table(["", ""], [
        ("quantisation", how), ("kernels", program.meta["kernels"]),
        ("instructions", len(program.code)), ("MACs", program.meta["macs"]),
        ("compile time", f"{seconds:.1f} s"), ("program", str(path))],
        title=f"int8 program for chip {cfg.name!r}"))


def step_run(ctx) -> None:
    """Run the held-out test set on the simulator; compare with the float model."""
    from compiler import reference
    from compiler.lower import compile_graph
    from frontend.tables import format_table
    from isa.errors import DozenError
    from simulator import Simulator

    digits, program = ctx.results["digits"], ctx.results["program"]
    result, seconds = timed(Simulator(program).run, {"image": digits.x_test})
    logits = result.outputs["logits"]
    ref = reference.run(ctx.results["graph"], {"image": digits.x_test})["logits"]
    chip_acc = accuracy(logits, digits.y_test)
    rep = result.report()
    n = len(digits.x_test)
    cfg = ctx.results["cfg"]
    # A Perfetto trace of a small batch (a trace of the whole run is tens of MB).
    small = quantize_cnn(ctx.results["net"], digits.x_train[:8])
    traced = Simulator(compile_graph(small, cfg), trace=True).run({"image": digits.x_test[:8]})
    trace = ctx.out_dir / "digits_cnn_trace.json"
    traced.write_trace(trace)
    print(format_table(["", ""], [
        ("float accuracy (numpy)", f"{ctx.results['float_acc']:.2%}"),
        ("int8 accuracy on the chip", f"{chip_acc:.2%}"),
        ("chip == int8 reference", "bit-exact" if np.array_equal(logits, ref) else
         f"max diff {float(np.abs(logits - ref).max()):.3g}"),
        ("cycles per image", f"{result.cycles / n:,.0f}"),
        ("images per second", f"{n * cfg.clock_mhz * 1e6 / result.cycles:,.0f} at "
                              f"{cfg.clock_mhz:g} MHz"),
        ("MAC utilisation (the model's MACs)",
         f"{program.meta['macs'] / (cfg.peak_macs_per_cycle * result.cycles):.2%} "
         f"(array busy {rep['mac_utilization']:.2%}: a 1-channel input fills few lanes)"),
        ("simulation wall time", f"{seconds:.1f} s for {len(program.code):,} instructions"),
        ("Perfetto trace (8 images)", f"{trace} (open in ui.perfetto.dev)")],
        title=f"{n} test images, int8 on the simulated chip"))
    if not np.array_equal(logits, ref):
        raise DozenError("the chip's logits differ from the int8 reference")
