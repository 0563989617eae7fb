# amaranth: UnusedElaboratable=no
"""`dozen rtl run`: a program on the RTL, checked against the simulator, one line on error."""

from __future__ import annotations

import json
from pathlib import Path

from frontend.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "matmul_tiny.s"


def test_rtl_run_agrees_with_the_simulator(tmp_path, capsys):
    program = tmp_path / "mm.dzn"
    assert main(["asm", str(EXAMPLE), "-o", str(program)]) == 0
    capsys.readouterr()
    assert main(["rtl", "run", str(program), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["dram_identical"]
    assert report["rtl_cycles"] == report["sim_cycles"] > 0


def test_rtl_run_of_a_missing_file_is_one_clear_error(tmp_path, capsys):
    assert main(["rtl", "run", str(tmp_path / "none.dzn")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err
