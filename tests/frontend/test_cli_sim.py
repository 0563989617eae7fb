"""`dozen sim`: counters as a table or JSON, inputs/outputs as .npy, traces, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frontend.cli import main
from isa.asm import assemble_file
from isa.encoding import make
from isa.table import SyncUnit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def elementwise(tmp_path: Path) -> Path:
    out = tmp_path / "elementwise.dzn"
    assemble_file(EXAMPLES / "elementwise.s").save(out)
    return out


def test_table_output_and_npy_round_trip(elementwise, tmp_path, capsys):
    x = np.linspace(-3, 3, 256 * 16, dtype=np.float32).reshape(256, 16)
    np.save(tmp_path / "x.npy", x)
    y_path = tmp_path / "y.npy"
    trace = tmp_path / "trace.json"
    assert main(["sim", str(elementwise), "--input", f"X={tmp_path / 'x.npy'}",
                 "--output", f"Y={y_path}", "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    for word in ("cycles", "MAC utilisation", "roofline", "memory-bound", "compute", "ternary",
                 "stalled on token", "ui.perfetto.dev"):
        assert word in out
    assert np.array_equal(np.load(y_path), np.where(x < 0, x * np.float32(0.1), x))
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e.get("args", {}).get("name") for e in events if e["ph"] == "M"}
    assert {"dispatcher", "load unit", "compute unit", "store unit"} <= names
    slices = [e for e in events if e["ph"] == "X"]
    assert any(e["name"].startswith("ternary ") for e in slices)
    assert any(e["name"].startswith("wait token") for e in slices)
    assert any(e["ph"] == "C" for e in events)


def test_json_has_the_documented_keys(elementwise, capsys):
    assert main(["sim", str(elementwise), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    for key in ("cycles", "instructions", "macs", "mac_utilization", "dram_bytes_read",
                "dram_bytes_written", "units", "roofline"):
        assert key in data
    assert data["missing_inputs"] == ["X"] and "left zero" in captured.err
    assert data["dram_bytes_read"] == 256 * 16 * 4


def test_missing_inputs_are_announced(elementwise, capsys):
    assert main(["sim", str(elementwise)]) == 0
    assert "inputs not given, left zero: X" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--input", "X=nowhere.npy"], "file not found"),
    (["--input", "X"], "NAME=FILE.npy"),
    (["--input", "Q=x.npy"], "no input named 'Q'"),
    (["--output", "Q=out.npy"], "no output named 'Q'"),
    (["--max-cycles", "0"], "--max-cycles"),
    (["--config", "nonsense"], "unknown config preset"),
])
def test_bad_input_is_one_line_exit_2(elementwise, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((256, 16), np.float32))
    assert main(["sim", str(elementwise), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_wrong_input_shape_or_dtype_exit_2(elementwise, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((256, 16), np.float64))
    assert main(["sim", str(elementwise), "-i", f"X={tmp_path / 'bad.npy'}"]) == 2
    assert "dtype float64" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((4, 4), np.float32))
    assert main(["sim", str(elementwise), "-i", f"X={tmp_path / 'bad.npy'}"]) == 2
    assert "shape (4, 4)" in capsys.readouterr().err


def test_missing_or_corrupt_program_exit_2(tmp_path, capsys):
    assert main(["sim", str(tmp_path / "none.dzn")]) == 2
    (tmp_path / "bad.dzn").write_bytes(b"garbage")
    assert main(["sim", str(tmp_path / "bad.dzn")]) == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_fault_is_one_line_exit_1(tmp_path, capsys):
    from isa.config import PRESETS
    from isa.container import Program
    wait = make("sync", ("pop_prev",), unit=SyncUnit.STORE)
    path = tmp_path / "deadlock.dzn"
    Program(PRESETS["tiny"], [wait, make("halt")]).save(path)
    assert main(["sim", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dozen sim: error: DEADLOCK") and err.count("\n") == 1


def test_cycle_limit_option(tmp_path, capsys):
    path = tmp_path / "gemm.dzn"
    assemble_file(EXAMPLES / "gemm_tiny.s").save(path)
    assert main(["sim", str(path), "--max-cycles", "50"]) == 1
    assert "CYCLE_LIMIT" in capsys.readouterr().err


def test_other_config_is_noted(tmp_path, capsys):
    path = tmp_path / "m.dzn"
    assemble_file(EXAMPLES / "matmul_tiny.s").save(path)
    assert main(["sim", str(path), "--config", "default"]) == 0
    assert "the program was built for 'tiny'" in capsys.readouterr().out


def test_check_races(tmp_path, capsys, elementwise):
    from isa.config import PRESETS
    from isa.container import Program
    from isa.encoding import local_addr
    from isa.table import Fmt, Mem
    racy = [make("store", sram=local_addr(Mem.SP, 0), dram=64, stride=4, rows=4, cols=4,
                 fmt=Fmt.U8),
            make("load", sram=local_addr(Mem.SP, 3), dram=0, stride=4, rows=1, cols=4,
                 fmt=Fmt.U8), make("halt")]
    path = tmp_path / "racy.dzn"
    Program(PRESETS["tiny"], racy).save(path)
    assert main(["sim", str(path), "--check-races"]) == 1
    assert "race: cycle" in capsys.readouterr().out
    assert main(["sim", str(path), "--check-races", "--json"]) == 1
    assert len(json.loads(capsys.readouterr().out)["races"]) == 1
    assert main(["sim", str(elementwise), "--check-races"]) == 0
    assert "races: 0 found" in capsys.readouterr().out


def test_trace_is_written_up_to_a_fault(tmp_path, capsys):
    from isa.config import PRESETS
    from isa.container import Program
    wait = make("sync", ("pop_prev",), unit=SyncUnit.STORE)
    path, trace = tmp_path / "deadlock.dzn", tmp_path / "t.json"
    Program(PRESETS["tiny"], [make("sync", unit=SyncUnit.LOAD), wait, make("halt")]).save(path)
    assert main(["sim", str(path), "--trace", str(trace)]) == 1
    assert "trace up to the fault" in capsys.readouterr().out
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e["ph"] == "X" and e["name"].startswith("wait token C->S") for e in events)


def test_assembly_source_runs_directly(capsys):
    assert main(["sim", str(EXAMPLES / "reduction.s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["instructions_by_opcode"]["reduce"] == 9


def test_profile_lists_the_hottest_instructions(capsys):
    assert main(["sim", str(EXAMPLES / "gemm_tiny.s"), "--profile", "3", "--json"]) == 0
    hot = json.loads(capsys.readouterr().out)["profile"]
    assert len(hot) == 3
    costs = [h["busy"] + h["stalled_on_token"] for h in hot]
    assert costs == sorted(costs, reverse=True) and hot[0]["instruction"].startswith("store")
    assert main(["sim", str(EXAMPLES / "gemm_tiny.s"), "--profile"]) == 0
    assert "Hottest 10 instructions" in capsys.readouterr().out
