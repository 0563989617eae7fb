"""`dozen info`, `asm`, `disasm` and `examples` through the real command line.

Bad input must give exactly one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from frontend.cli import main
from isa.container import Program
from isa.table import OPS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TINY_MATMUL = EXAMPLES / "matmul_tiny.s"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str, exit_code: int = 2) -> None:
    assert code == exit_code, err
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture
def tiny_dzn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "m.dzn"
    code, _, err = run(capsys, "asm", str(TINY_MATMUL), "-o", str(out))
    assert code == 0, err
    return out


# info --------------------------------------------------------------------------------------

def test_info_tables(capsys):
    code, out, err = run(capsys, "info")
    assert code == 0 and not err
    assert "Chip config 'default'" in out and "sp_rows" in out
    assert "4096" in out and "268,435,456" in out
    for op in OPS:
        assert f" {op.mnemonic} " in out
    assert "isa/SPEC.md" in out


def test_info_json(capsys):
    code, out, _ = run(capsys, "info", "--json", "--config", "tiny")
    data = json.loads(out)
    assert set(data) >= {"config", "isa"}
    assert data["config"]["n"] == 4 and data["config"]["derived"]["sp_rows"] == 256
    opcodes = data["isa"]["opcodes"]
    assert [o["opcode"] for o in opcodes] == list(range(12))
    assert all({"opcode", "mnemonic", "fields"} <= set(o) for o in opcodes)
    assert opcodes[1]["mnemonic"] == "load" and opcodes[1]["fields"][0]["name"] == "sram"


def test_info_with_toml_config(capsys, tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text('preset = "tiny"\nn = 8\nsp_bytes = 8192\n')
    code, out, _ = run(capsys, "info", "--json", "--config", str(path))
    assert code == 0 and json.loads(out)["config"]["name"] == "chip"


def test_info_extra_sections(capsys, monkeypatch):
    from frontend.commands import info

    monkeypatch.setattr(info, "EXTRA_SECTIONS",
                        [lambda cfg: ("Devices", ["name"], [["cpu"]], [{"name": "cpu"}])])
    assert run(capsys, "info")[1].count("Devices") == 1
    assert json.loads(run(capsys, "info", "--json")[1])["devices"] == [{"name": "cpu"}]


@pytest.mark.parametrize("config, fragments", [
    ("huge", ["unknown config preset 'huge'"]),
    ("missing.toml", ["config file not found"]),
])
def test_info_bad_config(capsys, config, fragments):
    code, out, err = run(capsys, "info", "--config", config)
    assert_one_line_error(code, err, "dozen info: error:", *fragments)
    assert not out


@pytest.mark.parametrize("text, fragment", [
    ("n = = 1\n", "not valid TOML"),
    ("n = 16\nwarp = 2\n", "unknown config key 'warp'"),
    ("n = 6\n", "n must be a power of two"),
    ("sp_bytes = 64\n", "scratchpad holds 1 rows"),
])
def test_info_bad_toml(capsys, tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, _, err = run(capsys, "info", "--config", str(path))
    assert_one_line_error(code, err, fragment)


# asm / disasm -----------------------------------------------------------------------------

def test_asm_disasm_asm_is_byte_exact(capsys, tmp_path, tiny_dzn):
    code, out, _ = run(capsys, "disasm", str(tiny_dzn))
    assert code == 0 and ".config tiny" in out and "matmul" in out
    source = tmp_path / "again.s"
    source.write_text(out)
    code, _, err = run(capsys, "asm", str(source))  # default output: again.dzn
    assert code == 0, err
    assert (tmp_path / "again.dzn").read_bytes() == tiny_dzn.read_bytes()


def test_asm_from_stdin(capsys, tmp_path, tiny_dzn, monkeypatch):
    import io

    code, text, _ = run(capsys, "disasm", str(tiny_dzn))
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    out = tmp_path / "piped.dzn"
    assert run(capsys, "asm", "-", "-o", str(out))[0] == 0
    assert out.read_bytes() == tiny_dzn.read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO("halt\nbogus\n"))
    code, _, err = run(capsys, "asm", "-", "-o", str(out))
    assert_one_line_error(code, err, "<stdin>:2:1: unknown mnemonic 'bogus'")
    code, _, err = run(capsys, "asm", "-")
    assert_one_line_error(code, err, "needs -o")


def test_asm_reports_what_it_wrote(capsys, tmp_path):
    out = tmp_path / "x.dzn"
    code, stdout, _ = run(capsys, "asm", str(TINY_MATMUL), "-o", str(out), "--config", "tiny")
    assert code == 0 and "5 instructions" in stdout and "chip 'tiny'" in stdout
    assert len(Program.load(out).code) == 5


def test_disasm_no_data_and_output_file(capsys, tmp_path, tiny_dzn):
    code, out, _ = run(capsys, "disasm", str(tiny_dzn), "--no-data")
    assert code == 0 and "; data segment at 0x100: 16 bytes" in out and ".bytes" not in out
    code, out, _ = run(capsys, "disasm", str(tiny_dzn), "--hex")
    assert code == 0 and "; 4  00000000000000000000000000000000" in out
    again = tmp_path / "hex.s"
    again.write_text(out)
    assert run(capsys, "asm", str(again))[0] == 0
    assert (tmp_path / "hex.dzn").read_bytes() == tiny_dzn.read_bytes()
    target = tmp_path / "out.s"
    code, out, _ = run(capsys, "disasm", str(tiny_dzn), "-o", str(target))
    assert code == 0 and not out and ".bytes 0x100" in target.read_text()


@pytest.mark.parametrize("source, fragments", [
    ("lod sp:0\n", ["bad.s:1:1: unknown mnemonic 'lod'"]),
    ("halt\nload sp:0, 0, 4, 0, 4, i8\n", ["bad.s:2:18: field 'rows' = 0 out of range"]),
    ("load sp:0, 0, 4, 1, 4, i7\n", ["bad.s:1:24: field 'fmt': unknown value 'i7'"]),
    ("matmul rows=R\n", ["bad.s:1:13: undefined name 'R'"]),
    ("x:\nx:\nhalt\n", ["bad.s:2:1: label 'x' defined twice"]),
    (".org 0\n", ["bad.s:1:1: unknown directive '.org'"]),
    (".config galaxy\n", ["bad.s:1:9: unknown config preset 'galaxy'"]),
])
def test_asm_errors_are_one_located_line(capsys, tmp_path, source, fragments):
    path = tmp_path / "bad.s"
    path.write_text(source)
    code, _, err = run(capsys, "asm", str(path), "-o", str(tmp_path / "bad.dzn"))
    assert_one_line_error(code, err, "dozen asm: error:", *fragments)
    assert not (tmp_path / "bad.dzn").exists()


def test_asm_missing_input_output_dir_and_config_mismatch(capsys, tmp_path):
    code, _, err = run(capsys, "asm", str(tmp_path / "none.s"))
    assert_one_line_error(code, err, "none.s", "file not found")
    code, _, err = run(capsys, "asm", str(TINY_MATMUL), "-o", str(tmp_path / "no" / "x.dzn"))
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run(capsys, "asm", str(TINY_MATMUL), "--config", "default")
    assert_one_line_error(code, err, "differs from --config (default)")
    code, _, err = run(capsys, "asm", str(TINY_MATMUL), "--config", "nope")
    assert_one_line_error(code, err, "unknown config preset 'nope'")
    source = tmp_path / "self.dzn"
    source.write_text("halt\n")
    code, _, err = run(capsys, "asm", str(source))
    assert_one_line_error(code, err, "would overwrite the source")
    assert source.read_text() == "halt\n"


def test_disasm_bad_inputs(capsys, tmp_path, tiny_dzn):
    blob = tiny_dzn.read_bytes()
    truncated = tmp_path / "trunc.dzn"
    truncated.write_bytes(blob[: len(blob) // 2])
    corrupt = tmp_path / "corrupt.dzn"
    corrupt.write_bytes(blob[:-5] + bytes([blob[-5] ^ 0xFF]) + blob[-4:])
    cases = [
        (tmp_path / "missing.dzn", "file not found"),
        (truncated, "truncated"),
        (corrupt, "CRC-32"),
        (TINY_MATMUL, "not a Dozen program"),
        (tmp_path, "is a directory"),
    ]
    for path, fragment in cases:
        code, out, err = run(capsys, "disasm", str(path))
        assert_one_line_error(code, err, "dozen disasm: error:", fragment)
        assert not out
    code, _, err = run(capsys, "disasm", str(tiny_dzn), "--config", "large")
    assert_one_line_error(code, err, "built for chip 'tiny'")
    assert run(capsys, "disasm", str(tiny_dzn), "--config", "tiny")[0] == 0


def test_usage_errors_are_one_line(capsys):
    code, _, err = run(capsys, "disasm")
    assert_one_line_error(code, err, "the following arguments are required")
    code, _, err = run(capsys, "frobnicate")
    assert_one_line_error(code, err, "invalid choice")


# examples ----------------------------------------------------------------------------------

def test_examples_table(capsys, tmp_path):
    code, out, _ = run(capsys, "examples", "-o", str(tmp_path))
    assert code == 0
    for path in EXAMPLES.glob("*.s"):
        assert path.name in out
        assert (tmp_path / f"{path.stem}.dzn").exists()
    assert "DIFFERS" not in out
    code, out, _ = run(capsys, "examples", "--config", "tiny")
    assert "matmul_tiny.s" in out and "loop_scale.s" not in out


def test_examples_bad_dir(capsys, tmp_path):
    code, _, err = run(capsys, "examples", "--dir", str(tmp_path / "nowhere"))
    assert_one_line_error(code, err, "examples folder not found")
    code, _, err = run(capsys, "examples", "--dir", str(tmp_path))
    assert_one_line_error(code, err, "no example programs")


# The installed entry point, end to end --------------------------------------------------------

def test_real_process_round_trip_and_error(tmp_path):
    dzn = tmp_path / "p.dzn"
    cmd = [sys.executable, "-m", "frontend"]
    done = subprocess.run([*cmd, "asm", str(TINY_MATMUL), "-o", str(dzn)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    dzn.write_bytes(dzn.read_bytes()[:40])
    done = subprocess.run([*cmd, "disasm", str(dzn)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "truncated" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_command_takes_config():
    import argparse

    from frontend.cli import build_parser

    def check(parser: argparse.ArgumentParser, prefix: str) -> None:
        # a command takes --config itself, or each of its actions does (`dozen rtl verilog`)
        sub = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        options = {s for action in parser._actions for s in action.option_strings}
        if "--config" in options:
            return
        assert sub, f"{prefix} lacks --config"
        for name, command in sub[0].choices.items():
            check(command, f"{prefix} {name}")

    root = build_parser()
    top = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    assert len(top.choices) >= 10
    for name, command in top.choices.items():
        check(command, f"dozen {name}")
