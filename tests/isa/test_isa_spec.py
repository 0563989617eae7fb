"""isa/SPEC.md: generated from the table and the model, complete, and never stale."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from isa import model, spec
from isa.config import PRESETS, ChipConfig
from isa.table import FUNCTION_DOC, OPS, Fault, all_functions


def test_committed_spec_is_up_to_date():
    committed = spec.SPEC_PATH.read_text()
    assert committed == spec.render(), "isa/SPEC.md is stale: run `make spec`"


def test_render_is_deterministic():
    assert spec.render() == spec.render()


def test_every_opcode_has_a_section_with_its_layout_and_latency():
    text = spec.render()
    for op in OPS:
        assert f"`{op.mnemonic}` (opcode {op.opcode})" in text
        assert op.semantics in text
        assert op.latency in text or op.latency == "0"
        for f in op.fields:
            assert f"| `{f.name}` |" in text


def test_every_function_fault_and_config_key_is_documented():
    text = spec.render()
    for _, fn, _ in all_functions():
        assert FUNCTION_DOC[fn].replace("|", "\\|") in text
    for fault in Fault:
        assert f"`{fault.name}`" in text
    for f in dataclasses.fields(ChipConfig):
        assert f.name in spec.CONFIG_DOC, f"CONFIG_DOC lacks {f.name}"
    for name in PRESETS:
        assert f"| {name} " in text or f" {name} |" in text


def test_model_prose_is_included():
    text = spec.render()
    for prose in (model.MEMORIES, model.UNITS, model.TIMING, model.NUMERICS):
        assert prose.strip().splitlines()[0] in text


def test_decisions_have_reasons_and_cover_the_big_choices():
    titles = " ".join(title for title, _ in spec.DECISIONS).lower()
    for topic in ("128-bit", "32 bits", "tokens", "halt is opcode 0", "rounds half up", "loop"):
        assert topic in titles, topic
    values = spec.decision_values()
    for _, text in spec.DECISIONS:
        assert len(text.format(**values)) > 80


def test_worked_examples_match_hand_computed_latencies():
    got = {(insn.mnemonic, insn.values.get("rows", insn.values.get("count"))): cycles
           for insn, cycles in spec.worked_examples()}
    assert got[("load", 16)] == 64 + 16 * 16 // 32
    assert got[("store", 16)] == 64 + 16 * 16 * 4 // 32
    assert got[("matmul", 512)] == 16 + 512 + 5  # weights, rows, read + 4 stages + write
    assert got[("unary", 16)] == 16 + 6  # rows, read + 5 stages + write
    text = spec.render()
    assert "| `halt` | 1 dispatch cycle | `00000000000000000000000000000000` |" in text


def test_rtl_section_is_driven_by_the_model_list(monkeypatch):
    assert "## 15. Not implemented by the RTL yet" in spec.render()
    monkeypatch.setattr(model, "RTL_UNSUPPORTED", ["matmul dtype=f32", "unary sin (f32)"])
    text = spec.render()
    assert "- matmul dtype=f32\n- unary sin (f32)\n" in text


def test_markdown_tables_are_well_formed():
    for line in spec.render().splitlines():
        if line.startswith("|"):
            body = line.replace("\\|", "")
            assert body.endswith("|"), line


def test_cli_check_mode():
    result = subprocess.run([sys.executable, "-m", "isa.spec", "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_check_mode_reports_stale(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "SPEC.md"
    stale.write_text("old\n")
    monkeypatch.setattr(spec, "SPEC_PATH", stale)
    assert spec.main(["--check"]) == 1
    assert "is stale: run `make spec`" in capsys.readouterr().err
