"""ChipConfig: presets, TOML loading and every way a config can be impossible."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from isa_strategies import configs

from isa.config import PRESETS, ChipConfig, load_config, preset
from isa.errors import ConfigError, InputError


def test_presets_are_valid_and_named():
    assert list(PRESETS) == ["tiny", "default", "large"]
    for name, cfg in PRESETS.items():
        assert cfg.name == name
        cfg.validate()
    assert load_config(None) is PRESETS["default"]
    assert preset("tiny").n == 4


def test_default_is_a_16x16_array_with_vta_gemmini_sizes():
    cfg = PRESETS["default"]
    assert (cfg.n, cfg.sp_bytes, cfg.acc_bytes) == (16, 256 * 1024, 64 * 1024)
    assert (cfg.row_bytes, cfg.sp_rows, cfg.acc_rows, cfg.log2_n) == (64, 4096, 1024, 4)
    assert cfg.derived()["peak_macs_per_cycle"] == 256
    assert cfg.derived()["peak_gops"] == pytest.approx(2 * 256 * 500 / 1000)


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown config preset 'huge' \(presets: tiny, default"):
        load_config("huge")
    with pytest.raises(ConfigError, match="unknown config preset 'huge'"):
        preset("huge")


@pytest.mark.parametrize("values, message", [
    ({"n": 3}, "n must be a power of two in 2..256, got 3"),
    ({"n": 12}, "n must be a power of two"),
    ({"n": 1}, "n must be a power of two"),
    ({"n": 512}, "n must be a power of two"),
    ({"n": 0}, "n must be a power of two"),
    ({"n": 16.0}, "n must be an integer"),
    ({"n": "16"}, "n must be an integer"),
    ({"n": True}, "n must be an integer"),
    ({"sp_bytes": 1000}, "sp_bytes=1000 is not a positive multiple of the row size 64"),
    ({"sp_bytes": 0}, "sp_bytes=0 is not a positive multiple"),
    ({"acc_bytes": -64}, "acc_bytes=-64"),
    ({"sp_bytes": 64 * 16}, "scratchpad holds 16 rows; it needs at least 2n = 32"),
    ({"acc_bytes": 64 * 8}, "accumulator holds 8 rows; it needs at least n = 16"),
    ({"sp_bytes": 64 * 65537}, "gives 65537 rows, more than the 65536"),
    ({"dram_bytes": 0}, r"dram_bytes must be in 1..2\^32"),
    ({"dram_bytes": (1 << 32) + 1}, r"dram_bytes must be in 1..2\^32"),
    ({"dram_latency": -1}, "dram_latency must be in 0..65536"),
    ({"dram_bw": 0}, "dram_bw must be in 1..65536"),
    ({"queue_depth": 0}, "queue_depth must be in 1..1024"),
    ({"token_depth": 0}, "token_depth must be in 1..65536"),
    ({"clock_mhz": 0}, r"clock_mhz must be in \(0, 10000\]"),
    ({"clock_mhz": "fast"}, "clock_mhz must be in"),
    ({"clock_mhz": True}, "clock_mhz must be in"),
    ({"dtypes": ["int4"]}, "dtypes must be a non-empty subset"),
    ({"dtypes": []}, "dtypes must be a non-empty subset"),
    ({"dtypes": "int8"}, "'dtypes' must be a list"),
    ({"name": ""}, "config name must be a non-empty string"),
    ({"name": 7}, "config name must be a non-empty string"),
    ({"bogus": 1}, "unknown config key 'bogus'"),
    ({"preset": "huge"}, "unknown config preset 'huge'"),
    ({"preset": 3}, "'preset' must be a preset name"),
])
def test_impossible_configs_are_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        ChipConfig.from_dict(values)


def test_config_must_be_a_table():
    with pytest.raises(ConfigError, match="must be a table of keys, got list"):
        ChipConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_from_dict_starts_from_a_preset():
    cfg = ChipConfig.from_dict({"preset": "tiny", "dram_bw": 8}, name="fast_tiny")
    assert (cfg.n, cfg.dram_bw, cfg.name) == (4, 8, "fast_tiny")
    assert ChipConfig.from_dict({}) == PRESETS["default"]


def test_config_errors_are_input_errors_with_exit_code_2():
    assert issubclass(ConfigError, InputError) and ConfigError.exit_code == 2


# TOML files -----------------------------------------------------------------------------------

def test_toml_file_loads_with_name_from_stem(tmp_path):
    path = tmp_path / "wide.toml"
    path.write_text('preset = "tiny"\nn = 8\nsp_bytes = 8192\n')
    cfg = load_config(str(path))
    assert (cfg.name, cfg.n, cfg.sp_bytes, cfg.acc_bytes) == ("wide", 8, 8192, 1024)
    assert load_config(path) == cfg  # a Path works as well as a string


def test_toml_chip_table_and_explicit_name(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[chip]\nname = "mine"\nn = 32\n')
    cfg = load_config(str(path))
    assert (cfg.name, cfg.n) == ("mine", 32)


@pytest.mark.parametrize("cfg", list(PRESETS.values()), ids=list(PRESETS))
def test_to_toml_round_trips(tmp_path, cfg):
    path = tmp_path / f"{cfg.name}.toml"
    path.write_text(cfg.to_toml())
    assert load_config(str(path)) == cfg


@settings(max_examples=50, deadline=None)
@given(configs())
def test_to_dict_round_trips(cfg):
    assert ChipConfig.from_dict(cfg.to_dict()) == cfg


def test_toml_syntax_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("n = = 4\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        load_config(str(path))


def test_toml_not_utf8(tmp_path):
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe n = 4")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(path))


def test_toml_unknown_key_and_bad_value(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text("n = 16\nsram = 5\n")
    with pytest.raises(ConfigError, match="unknown config key 'sram'"):
        load_config(str(path))
    path.write_text("n = 6\n")
    with pytest.raises(ConfigError, match="config 'k': n must be a power of two"):
        load_config(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.toml"):
        load_config(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="unknown config preset 'nope'"):
        load_config("nope")
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(folder))


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["tiny"].n = 8  # type: ignore[misc]


def test_to_toml_quotes_names(tmp_path):
    cfg = ChipConfig(name='my "chip"\\1')
    path = tmp_path / "q.toml"
    path.write_text(cfg.to_toml())
    assert load_config(str(path)) == cfg


def test_configs_are_hashable_values():
    cfg = ChipConfig(name="x", dtypes=["int8", "int32"])  # type: ignore[arg-type]
    assert cfg.dtypes == ("int8", "int32")
    assert len({cfg, ChipConfig(name="x", dtypes=("int8", "int32")), PRESETS["tiny"]}) == 2
