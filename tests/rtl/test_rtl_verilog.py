# amaranth: UnusedElaboratable=no
"""The exported Verilog: `dozen rtl verilog`, and cocotb runs of the same corpus.

The cocotb bench builds the core once per config under build/rtl/ (ignored by git), so
only the first run pays Verilator's compile; Icarus runs where it is installed.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rtl_programs import TINY, compare, programs
from test_rtl_programs import example_programs, reference

from frontend.cli import main
from rtl.cocotb_bench import run_verilog, simulator_available


def test_verilog_export_command(tmp_path, capsys):
    out = tmp_path / "dozen.v"
    assert main(["rtl", "verilog", "--config", "tiny", "--imem-depth", "16", "-o", str(out)]) == 0
    text = out.read_text()
    assert re.search(r"^module dozen_core\(", text, re.M)
    for port in ("clk", "rst", "run", "imem_we", "dram__rd_data", "dram__wr_data", "done",
                 "fault", "cycles"):
        assert re.search(rf"^\s*(input|output) .*\b{port}\b", text, re.M), port
    assert "dozen.v" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_verilog_export_to_a_missing_directory_is_one_clear_error(tmp_path, capsys):
    code = main(["rtl", "verilog", "--config", "tiny", "-o", str(tmp_path / "no" / "x.v")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
@given(batch=st.lists(programs(), min_size=24, max_size=24))  # one build runs them all
def test_cocotb_runs_match_the_simulator(simulator, batch):
    if not simulator_available(simulator):
        pytest.skip(f"{simulator} is not installed")
    corpus = example_programs() + batch
    results = run_verilog(corpus, TINY, simulator=simulator)
    for program, rtl in zip(corpus, results, strict=True):
        compare(program, rtl, reference(program))
