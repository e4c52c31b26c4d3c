"""``ofmu unlearn | bench | eval`` on digits, end to end through the command line."""

from __future__ import annotations

import json

import pytest

from ofmu_opt.cli import main
from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.benchmarks import get_benchmark, list_benchmarks


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OFMU_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "model_cache"))


QUICK = ["--quick", "-q", "--option", "experiment.train_steps=250", "--option", "experiment.hidden=32"]


def test_unlearn_writes_open_unlearning_eval_summary_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "u"
    code = main(
        [
            "unlearn",
            "--benchmark",
            "digits",
            "--scenario",
            "random10",
            "--method",
            "graddiff",
            "--option",
            "steps=8",
            "--out",
            str(out),
            *QUICK,
        ]
    )
    assert code == 0
    ev = json.loads((out / "DIGITS_EVAL.json").read_text())
    summary = json.loads((out / "DIGITS_SUMMARY.json").read_text())
    for k in ("UA", "RA", "TA", "MIA", "RTE", "avg_gap"):
        assert set(ev[k]) == {"agg_value", "value_by_index"}
        assert summary[k] == ev[k]["agg_value"]
    assert len(ev["UA"]["value_by_index"]) == 108
    assert all(set(v) == {"member_pred", "confidence"} for v in ev["MIA"]["value_by_index"].values())
    assert (out / "model.safetensors").is_file() and (out / "method.toml").read_text().count("steps = 8") == 1
    assert "wrote" in capsys.readouterr().out
    # --resume with the same configuration does nothing; eval re-computes the same numbers from the checkpoint
    assert (
        main(
            [
                "unlearn",
                "--benchmark",
                "digits",
                "--scenario",
                "random10",
                "--method",
                "graddiff",
                "--option",
                "steps=8",
                "--out",
                str(out),
                "--resume",
                *QUICK,
            ]
        )
        == 0
    )
    assert "already complete" in capsys.readouterr().out
    ev_dir = tmp_path / "e"
    assert main(["eval", "--benchmark", "digits", "--model", str(out), "--out", str(ev_dir), "-q"]) == 0
    again = json.loads((ev_dir / "DIGITS_SUMMARY.json").read_text())
    for k in ("UA", "RA", "TA", "MIA"):
        assert again[k] == pytest.approx(summary[k])


def test_unknown_method_and_bad_option_exit_2_with_one_line(tmp_path, capsys):
    assert main(["unlearn", "--benchmark", "digits", "--method", "nope", "--out", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ofmu: error: method: expected one of") and "\n" not in err
    assert (
        main(
            [
                "unlearn",
                "--benchmark",
                "digits",
                "--method",
                "ga",
                "--option",
                "bogus=1",
                "--out",
                str(tmp_path),
                *QUICK,
            ]
        )
        == 2
    )
    assert "unknown option ga.'bogus'" in capsys.readouterr().err
    assert main(["unlearn", "--benchmark", "digits", "--method", "ga", "--option", "noequals", "-q"]) == 2
    assert main(["bench", "--benchmark", "digits", "--methods", "idk_dpo", "-q", "--out", str(tmp_path)]) == 2
    assert "does not apply to this benchmark (classifier)" in capsys.readouterr().err


def test_unknown_benchmark_lists_names():
    with pytest.raises(ConfigError, match="digits, cifar10, tinytofu"):
        get_benchmark("imagenet")
    assert {"digits", "cifar10", "tinytofu", "tofu", "tinywmdp", "mcq"} == set(list_benchmarks())


def test_bench_writes_table_csv_json_and_plots(tmp_path, capsys):
    out = tmp_path / "b"
    code = main(
        [
            "bench",
            "--benchmark",
            "digits",
            "--scenario",
            "class:3",
            "--methods",
            "ga,graddiff",
            "--seeds",
            "2",
            "--budget",
            "2",
            "--out",
            str(out),
            "--option",
            "steps=10",
            *QUICK,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| retrain |" in printed and "| ga |" in printed and "tradeoff.png" in printed
    for f in ("results.md", "results.csv", "results.json", "tradeoff.png", "conflict.png"):
        assert (out / f).stat().st_size > 0
    res = json.loads((out / "results.json").read_text())
    assert res["seeds"] == [0, 1] and set(res["summary"]) == {"retrain", "ga", "graddiff"}
    assert len(res["search"]["ga"]) == 2 and res["selected"]["ga"]["steps"] == 10
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert rows[0].startswith("method,seed,UA") and len(rows) == 1 + 3 * 2
    assert "±" in (out / "results.md").read_text()
    # resume re-uses every run record and reproduces the same table
    first = (out / "results.md").read_text()
    assert (
        main(
            [
                "bench",
                "--benchmark",
                "digits",
                "--scenario",
                "class:3",
                "--methods",
                "ga,graddiff",
                "--seeds",
                "2",
                "--budget",
                "2",
                "--out",
                str(out),
                "--option",
                "steps=10",
                "--resume",
                *QUICK,
            ]
        )
        == 0
    )
    second = (out / "results.md").read_text()
    strip_rte = [line.rsplit("|", 2)[0] for line in first.splitlines()]
    assert strip_rte == [line.rsplit("|", 2)[0] for line in second.splitlines()]


def test_a_crashing_method_is_reported_without_losing_the_others(tmp_path, capsys, monkeypatch):
    import ofmu_opt.unlearning.bench_loop as vb
    from ofmu_opt.unlearning.methods.registry import MethodSpec, get_method

    class Boom:
        name = "ft"

        def __init__(self, config):
            self.config = config

        def run(self, ctx):
            raise RuntimeError("kaboom")

    real = get_method

    def fake(name):
        spec = real(name)
        return MethodSpec(spec.name, Boom, spec.config_cls, spec.tasks) if name == "ft" else spec

    monkeypatch.setattr(vb, "get_method", fake)
    out = tmp_path / "b"
    code = main(["bench", "--benchmark", "digits", "--methods", "ft,ga", "--seeds", "1", "--budget", "1",
                 "--out", str(out), "--option", "steps=3", *QUICK])  # fmt: skip
    assert code == 1
    md = (out / "results.md").read_text()
    assert "| ga |" in md and "Failed: ft: RuntimeError: kaboom" in md


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["random10", "class:3"])
def test_quick_bench_with_every_method_runs(tmp_path, capsys, scenario, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("heavier run: opt in with -m slow")

    from ofmu_opt.unlearning.methods.registry import list_methods

    out = tmp_path / "b"
    code = main(["bench", "--benchmark", "digits", "--scenario", scenario, "--methods", "all", "--seeds", "3",
                 "--quick", "-q", "--out", str(out)])  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    expected = {m for m in list_methods("classifier") if m != "retrain"} - set(res["skipped"])
    assert code == 0 and set(res["summary"]) == expected | {"retrain"}


def test_bench_rejects_options_no_method_has(tmp_path, capsys):
    args = ["bench", "--benchmark", "digits", "--methods", "ga,ft", "-q", "--out", str(tmp_path)]
    assert main([*args, "--option", "gamma=0.5"]) == 2
    assert "no method of this run has this option" in capsys.readouterr().err
    assert main([*args, "--option", "nosuch.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "unknown prefix 'nosuch'" in err and "'experiment.', 'ga.', 'ft.'" in err
