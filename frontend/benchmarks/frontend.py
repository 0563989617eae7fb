"""Frontend benchmarks, each beside onnxruntime on the same model in the same run.

- ONNX import of a ResNet-50-structured model (53 convs, 25.6 M parameters, random
  weights): `load_onnx` from the file, against creating an onnxruntime session for it.
  Target: under 5 s.
- The numpy reference interpreter running that model at 224x224, against onnxruntime's
  CPU inference (the oracle is not meant to be fast; the ratio says how far it is), and
  the largest difference between the two relative to the logits' range.
- Int8 quantisation of the model (calibration on 2 inputs + the rewrite) and the
  quantised graph's agreement with float.
`quick` uses a ResNet-50 with 112x112 inputs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from compiler.reference import run
from frontend.benchmarks import row
from isa.config import ChipConfig


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def resnet50_import_and_reference(cfg: ChipConfig, quick: bool) -> list[dict[str, Any]]:
    del cfg
    import onnx
    import onnxruntime as ort

    from frontend.onnx_import import load_onnx
    from frontend.onnx_models import resnet
    from frontend.quantize import quantize

    image = 112 if quick else 224
    model = resnet(image=image)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        onnx.save(model, str(path))
        t_import, graph = _timed(lambda: load_onnx(path))
        t_session, session = _timed(lambda: ort.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]))
    nodes = len(graph.nodes())
    rows.append(row(f"ONNX import ResNet-50 ({len(model.graph.node)} ONNX nodes -> {nodes} "
                    "IR nodes) vs onnxruntime session", "seconds", round(t_import, 3),
                    round(t_session, 3), target=5.0, higher_is_better=False))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, image, image)).astype(np.float32)
    t_ref, ours = _timed(lambda: run(graph, {"input": x})["logits"])
    t_ort, theirs = _timed(lambda: session.run(None, {"input": x})[0])
    rows.append(row(f"numpy reference ResNet-50 {image}x{image} vs onnxruntime CPU",
                    "seconds", round(t_ref, 3), round(t_ort, 4), higher_is_better=False))
    err = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    rows.append(row("numpy reference vs onnxruntime: max |diff| / max |logit|", "ratio",
                    float(f"{err:.3g}"), target=1e-4, higher_is_better=False))
    calib = [{"input": rng.standard_normal(x.shape).astype(np.float32)} for _ in range(2)]
    t_q, qgraph = _timed(lambda: quantize(graph, calib))
    rows.append(row("int8 quantisation of ResNet-50 (2 calibration inputs)", "seconds",
                    round(t_q, 3), higher_is_better=False))
    q_out = run(qgraph, {"input": x})["logits"]
    q_err = float(np.max(np.abs(q_out - ours)) / np.max(np.abs(ours)))
    top1 = bool(np.argmax(q_out) == np.argmax(ours))
    rows.append(row("int8 ResNet-50 vs float: max |diff| / max |logit|", "ratio",
                    float(f"{q_err:.3g}")))
    rows.append(row("int8 ResNet-50 vs float: same top-1 class", "bool", top1))
    return rows


BENCHMARKS = [resnet50_import_and_reference]
