"""Race detection: conflicting footprints on different units with overlapping busy cycles."""

from __future__ import annotations

import sys
from pathlib import Path

from sim_helpers import ACC, HALT, SP, run

from isa.asm import assemble_file
from isa.config import PRESETS
from isa.encoding import make
from isa.table import Fmt, SyncUnit
from simulator import Simulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def races_of(code):
    return run(code, check_races=True).races


def test_store_reading_rows_a_load_overwrites_is_a_race():
    code = [make("store", sram=SP(0), dram=64, stride=4, rows=4, cols=4, fmt=Fmt.U8),
            make("load", sram=SP(3), dram=0, stride=4, rows=1, cols=4, fmt=Fmt.U8), HALT]
    (race,) = races_of(code)
    assert race.space == "sp" and race.address == 3 and race.kind == "read/write"
    assert set(race.units) == {"load", "store"} and set(race.pcs) == {0, 1}
    assert "no token ordering" in str(race)


def test_tokens_remove_the_race():
    code = [make("store", ("push_prev",), sram=SP(0), dram=64, stride=4, rows=4, cols=4,
                 fmt=Fmt.U8),
            make("sync", ("pop_next", "push_prev"), unit=SyncUnit.COMPUTE),
            make("load", ("pop_next",), sram=SP(3), dram=0, stride=4, rows=1, cols=4,
                 fmt=Fmt.U8), HALT]
    assert races_of(code) == []


def test_disjoint_rows_and_dram_races():
    disjoint = [make("store", sram=SP(0), dram=64, stride=4, rows=2, cols=4, fmt=Fmt.U8),
                make("load", sram=SP(2), dram=0, stride=4, rows=1, cols=4, fmt=Fmt.U8), HALT]
    assert races_of(disjoint) == []
    dram = [make("store", sram=SP(0), dram=64, stride=4, rows=2, cols=4, fmt=Fmt.U8),
            make("load", sram=SP(8), dram=66, stride=4, rows=1, cols=4, fmt=Fmt.U8), HALT]
    (race,) = races_of(dram)
    assert race.space == "dram" and race.address == 66


def test_compute_writing_what_a_store_reads():
    code = [make("store", sram=ACC(0), dram=0, stride=16, rows=4, cols=4, fmt=Fmt.X32),
            make("matmul", dst=2, inp=0, wgt=0, rows=1), HALT]
    (race,) = races_of(code)
    assert race.space == "acc" and race.address == 2 and race.kind == "read/write"


def test_no_check_no_list():
    assert run([HALT]).races is None


def test_examples_and_the_generated_gemm_are_race_free():
    for path in sorted(EXAMPLES.glob("*.s")):
        assert Simulator(assemble_file(path), check_races=True).run().races == [], path.name
    sys.path.insert(0, str(EXAMPLES))
    from gemm_gen import gemm_program
    program = gemm_program(64, 64, 32, PRESETS["default"])
    assert Simulator(program, check_races=True).run().races == []


def test_loop_offsets_are_part_of_the_footprint():
    loop = make("loop", count=3, body=1, d_dst=1)
    load = make("load", sram=SP(0), dram=0, stride=4, rows=1, cols=4, fmt=Fmt.U8)
    # The store (rows 2..11) is busy in cycles 1..14; the loads start at 3, 8 and 13 on rows
    # 0, 1 and 2: only the third touches the store's rows.
    store = make("store", sram=SP(2), dram=64, stride=4, rows=10, cols=4, fmt=Fmt.U8)
    races = races_of([store, loop, load, HALT])
    assert [(r.address, r.cycle) for r in races] == [(2, 13)]
