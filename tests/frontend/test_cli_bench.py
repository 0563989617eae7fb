"""`dozen bench`: discovery, row format, table and JSON output (no timing is asserted)."""

from __future__ import annotations

import json

from frontend.benchmarks import ROW_KEYS, discover, row
from frontend.cli import main


def test_row_ratio_and_target():
    r = row("b", "m", 3.0, reference=1.5, target=2.0)
    assert r == {"benchmark": "b", "metric": "m", "value": 3.0, "reference": 1.5, "ratio": 2.0,
                 "target": ">= 2", "ok": True}
    assert row("b", "m", 3.0, target=2.0, higher_is_better=False)["ok"] is False
    assert row("b", "m", False)["ok"] is False and row("b", "m", 7)["ok"] is None
    assert set(row("b", "m", 1)) == set(ROW_KEYS)


def test_simulator_benchmark_is_discovered():
    assert "simulator.gemm_speed" in [name for name, _ in discover()]


def test_bench_json_and_table(capsys):
    code = main(["bench", "--quick", "--only", "simulator", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(set(r) == set(ROW_KEYS) for r in rows)
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["C equals numpy A @ W"]["value"] is True
    assert 0 < by_metric["MAC utilisation"]["value"] <= 1
    assert code == (1 if any(r["ok"] is False for r in rows) else 0)
    main(["bench", "--quick", "--only", "no-such-benchmark"])
    assert "benchmark" in capsys.readouterr().out
