"""The `ofmu rates` contract: the JSON list, the table, unknown names (exit 2), the files written."""

import json

from ofmu_opt.cli import main

KEYS = {"experiment", "quantity", "kind", "fitted", "expected", "r2", "verdict"}


def test_rates_json_contract(capsys, tmp_path):
    code = main(["rates", "inner_contraction", "outer_linear", "--quick", "--json", "--out", str(tmp_path)])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and len(rows) >= 3
    assert {r["experiment"] for r in rows} == {"inner_contraction", "outer_linear"}
    for r in rows:
        assert set(r) == KEYS
        assert r["kind"] == "law" and r["verdict"] == "holds"
        assert isinstance(r["fitted"], float) and isinstance(r["expected"], float) and r["r2"] >= 0.95
    for name in ("inner_contraction", "outer_linear"):
        assert (tmp_path / f"{name}.json").is_file() and (tmp_path / f"{name}.png").is_file()
    summary = json.loads((tmp_path / "rates.json").read_text())
    assert len(summary["records"]) == len(rows) and all("details" in r for r in summary["records"])


def test_rates_table_names_the_plots(capsys, tmp_path):
    assert main(["rates", "inner_contraction", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "inner_contraction" in out and "verdict" in out and "holds" in out
    assert str(tmp_path / "inner_contraction.png") in out


def test_unknown_experiment_exits_2_and_lists_the_valid_ones(capsys, tmp_path):
    assert main(["rates", "nope", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "penalty_bias" in err and "base_choice" in err
    assert not any(tmp_path.iterdir())  # rejected before any work


def test_no_plots_writes_json_only(capsys, caplog, monkeypatch, tmp_path):
    """Also: off a terminal the experiments are counted in progress log lines (stdout stays the JSON)."""
    import logging

    from ofmu_opt._progress import settings

    monkeypatch.delenv("OFMU_PROGRESS", raising=False)
    with settings(mode="log", log_every_s=1e-9, min_phase_s=0.0), caplog.at_level(logging.INFO,
                                                                                     logger="ofmu_opt.progress"):
        assert main(["rates", "inner_contraction", "--quick", "--json", "--no-plots", "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)
    lines = [r.getMessage() for r in caplog.records if r.name == "ofmu_opt.progress"]
    assert lines and lines[-1].startswith("rates: 1/1 exp (100%)") and "last=inner_contraction" in lines[-1]
    assert (tmp_path / "inner_contraction.json").is_file() and not list(tmp_path.glob("*.png"))


def test_bad_seed_and_out_exit_2_before_any_work(capsys, tmp_path):
    for args in (["--seed", str(2**70)], ["--seed", "-1"], ["--seed", "1.5"], ["--out", str(tmp_path / ("n" * 300))]):
        try:
            code = main(["rates", "inner_contraction", "--quick", *args] + ([] if "--out" in args else
                                                                           ["--out", str(tmp_path / "o")]))
        except SystemExit as exc:  # argparse rejects the value
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("ofmu: error:") and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert not any(tmp_path.iterdir())
