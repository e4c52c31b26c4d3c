"""`make demo`'s reference table keeps its columns aligned whatever the problem names' lengths."""

from __future__ import annotations

from ofmu_opt.cli.cmd_demo import _format


def test_reference_table_columns_align_with_long_problem_names() -> None:
    rows = [
        {"problem": "P3", "solver": "gpbgd", "status": "converged", "distance": 1e-7, "oracle_calls": 10,
         "wall_time_s": 0.1},
        {"problem": "LamparielloSagratella2017Ex35", "solver": "vpbgd", "status": "stationary",
         "distance": 2.5e-3, "oracle_calls": 12345, "wall_time_s": 12.25},
        {"problem": "P5", "solver": "scalarized", "status": "n/a", "note": "not expressible"},
    ]
    lines = _format(rows).splitlines()
    header, body = lines[0], lines[2:]
    col = header.index("solver")
    assert [ln[col:].split()[0] for ln in body] == ["gpbgd", "vpbgd", "scalarized"]
    dist = header.index("distance")
    assert body[1][dist:dist + 9].strip() == "2.50e-03"
    assert body[1].split()[0] == "LamparielloSagratella2017Ex35"
