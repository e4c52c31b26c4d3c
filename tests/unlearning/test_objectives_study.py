"""The OFMU study's verdicts (benchmarks/study_ofmu.py): Pareto dominance, the no-penalty comparison and its
seed-spread flag, on hand-made bench summaries."""

from __future__ import annotations

from benchmarks.study_ofmu import analyse, dominates, markdown


def _run(method: str, rows: dict[str, dict[str, list[float]]]) -> dict:
    return {"method": method, "options": [], "command": f"ofmu bench --methods {method} --out x/y/{method} -q",
            "summary": rows}


def _digits(ua: float, ta: float, sd: float = 0.1) -> dict[str, list[float]]:
    return {"UA": [ua, sd], "TA": [ta, sd], "RA": [99.0, 0.0], "MIA": [0.0, 0.0], "avg_gap": [0.0, 0.0],
            "RTE": [1.0, 0.0]}


def test_dominates_needs_both_axes_and_one_strict() -> None:
    assert dominates((1.0, 1.0), (0.0, 1.0))
    assert not dominates((1.0, 1.0), (1.0, 1.0))
    assert not dominates((2.0, 0.0), (1.0, 1.0))


def test_analyse_verdicts_front_and_no_penalty() -> None:
    retrain = _digits(100.0, 98.0)
    runs = {
        "graddiff": _run("graddiff", {"retrain": retrain, "graddiff": _digits(97.0, 97.5)}),
        "npo": _run("npo", {"retrain": retrain, "npo": _digits(100.0, 96.0)}),
        "ga": _run("ga", {"retrain": retrain, "ga": _digits(100.0, 95.0)}),
        "ofmu": _run("ofmu", {"retrain": retrain, "ofmu": _digits(100.0, 97.0, sd=2.0)}),
        "ofmu: no penalty": _run("ofmu", {"retrain": retrain, "ofmu": _digits(100.0, 96.5, sd=2.0)}),
        "ofmu: T=0": _run("ofmu", {"retrain": retrain, "ofmu": _digits(90.0, 95.0)}),
    }
    st = analyse("digits_class3", runs)
    assert st["points"]["ofmu"] == [0.0, 97.0]  # forgetting = -|UA - UA_Retrain|
    assert st["verdicts"]["ofmu"] == {"on_front": True, "dominated_by": []}
    assert st["verdicts"]["ofmu: T=0"]["dominated_by"] == ["graddiff", "npo", "ga"]
    assert st["ofmu_vs_no_penalty"] == "ahead (within the seed spread on both axes)"
    text = markdown("digits_class3", st)
    assert "| ofmu: T=0 |" in text and "no (dominated by graddiff, npo, ga)" in text


def test_no_penalty_clearly_ahead_is_behind_for_ofmu() -> None:
    retrain = _digits(100.0, 98.0)
    runs = {
        "graddiff": _run("graddiff", {"retrain": retrain, "graddiff": _digits(50.0, 90.0)}),
        "npo": _run("npo", {"retrain": retrain, "npo": _digits(50.0, 90.0)}),
        "ga": _run("ga", {"retrain": retrain, "ga": _digits(50.0, 90.0)}),
        "ofmu": _run("ofmu", {"retrain": retrain, "ofmu": _digits(90.0, 92.0, sd=0.1)}),
        "ofmu: no penalty": _run("ofmu", {"retrain": retrain, "ofmu": _digits(100.0, 97.0, sd=0.1)}),
    }
    assert analyse("digits_class3", runs)["ofmu_vs_no_penalty"] == "behind"
