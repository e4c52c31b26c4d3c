"""Forget objectives (methods/objectives.py): their maximizers are what the docs say, the task checks, and the
size of the gradient at a trained classifier (ascent nearly stationary, the target objectives not)."""

from __future__ import annotations

import math
import re
from itertools import cycle

import pytest
import torch
import torch.nn.functional as F

from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.data.common import LabeledBatch
from ofmu_opt.unlearning.methods.base import UnlearnContext
from ofmu_opt.unlearning.methods.objectives import ObjectiveOptions, make_objective, resolve_objective
from ofmu_opt.unlearning.models.vision import ClassifierAdapter

K = 5


class Logits(torch.nn.Module):
    """A 'model' whose output is a free logit table (one row per example): the maximizer is explicit."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(n, K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x.long()]


def _batch(n: int = 6) -> LabeledBatch:
    ids = torch.arange(n)
    return LabeledBatch(ids.clone(), ids % K, ids)


def _ctx(model: torch.nn.Module, *, validation=None) -> UnlearnContext:
    ctx = UnlearnContext(model=model, reference=model, adapter=ClassifierAdapter(K), forget=iter(()),
                         retain=iter(()))
    if validation is not None:
        ctx.validation = validation  # type: ignore[attr-defined]
    return ctx


def _ascend(obj, model: torch.nn.Module, batch: LabeledBatch, steps: int = 400) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        (-obj(model, batch)).backward()
        opt.step()


def test_other_class_maximizer_forgets_the_label() -> None:
    model, b = Logits(6), _batch()
    obj = make_objective("other_class", _ctx(model), b, ObjectiveOptions())
    before = float(obj(model, b).detach())
    _ascend(obj, model, b)
    p = F.softmax(model(b.x), -1)
    assert float(obj(model, b)) > before
    assert float(p.gather(1, b.y[:, None]).max()) < 0.05  # the label's probability is driven to 0
    others = p.clone()
    others.scatter_(1, b.y[:, None], float("nan"))
    vals = others[~others.isnan()]
    assert torch.allclose(vals, torch.full_like(vals, 1.0 / (K - 1)), atol=0.02)
    assert float(obj(model, b)) <= -math.log(K - 1) + 1e-6  # bounded above by its supremum


def test_uniform_maximizer_is_the_uniform_prediction() -> None:
    model, b = Logits(6), _batch()
    with torch.no_grad():
        model.table.normal_()
    obj = make_objective("uniform", _ctx(model), b, ObjectiveOptions())
    _ascend(obj, model, b)
    p = F.softmax(model(b.x), -1)
    assert torch.allclose(p, torch.full_like(p, 1.0 / K), atol=1e-3)


def test_calibrated_targets_follow_held_out_confidence_and_error() -> None:
    n = 200
    model = Logits(n)
    b = _batch(n)
    # held-out data: the reference predicts the label with probability 0.8 on 3/4 of it and is wrong on 1/4
    val_tab = Logits(40)
    with torch.no_grad():
        y = torch.arange(40) % K
        logit = math.log(0.8 / (0.2 / (K - 1)))
        val_tab.table.zero_()
        val_tab.table[torch.arange(40), y] = logit
        val_tab.table[torch.arange(30, 40), y[30:40]] = -5.0  # wrong on 10 of 40
    val = cycle([LabeledBatch(torch.arange(40), y, torch.arange(40))])
    ctx = UnlearnContext(model=model, reference=val_tab, adapter=ClassifierAdapter(K), forget=iter(()),
                         retain=iter(()))
    ctx.validation = val  # type: ignore[attr-defined]
    obj = make_objective("calibrated", ctx, b, ObjectiveOptions(calibration_batches=1))
    _ascend(obj, model, b, steps=600)
    p = F.softmax(model(b.x), -1)
    on_label = p.gather(1, b.y[:, None]).squeeze(1)
    flipped = on_label < 0.5
    assert 0.15 <= float(flipped.float().mean()) <= 0.35  # ≈ the held-out error 0.25
    assert torch.allclose(on_label[~flipped], torch.full_like(on_label[~flipped], 0.8), atol=0.02)


def test_calibrated_without_held_out_data_is_a_config_error() -> None:
    model, b = Logits(6), _batch()
    with pytest.raises(ConfigError, match="held-out"):
        make_objective("calibrated", _ctx(model), b, ObjectiveOptions())
    obj = make_objective("calibrated", _ctx(model), b, ObjectiveOptions(target_confidence=0.9, target_error=0.0))
    assert math.isfinite(float(obj(model, b)))


def test_ascent_is_the_mean_nll() -> None:
    model, b = Logits(6), _batch()
    with torch.no_grad():
        model.table.normal_()
    obj = make_objective("ascent", _ctx(model), b, ObjectiveOptions())
    assert torch.allclose(obj(model, b), F.cross_entropy(model(b.x), b.y))


def test_npo_term_is_bounded_and_zero_slope_far_out() -> None:
    model, b = Logits(6), _batch()
    ref = Logits(6)
    ctx = UnlearnContext(model=model, reference=ref, adapter=ClassifierAdapter(K), forget=iter(()), retain=iter(()))
    obj = make_objective("npo", ctx, b, ObjectiveOptions(npo_beta=0.5))
    assert abs(float(obj(model, b)) - (2 / 0.5) * math.log(0.5)) < 1e-6  # at π = π_ref: (2/b)·log σ(0)
    _ascend(obj, model, b, steps=300)
    assert -0.05 < float(obj(model, b).detach()) <= 0.0  # sup 0, approached as π_θ → 0


def test_task_checks_and_auto() -> None:
    model, b = Logits(6), _batch()
    ctx = _ctx(model)
    assert resolve_objective("auto", ctx, b) == "other_class"
    for name in ("idk", "idk_npo"):
        with pytest.raises(ConfigError, match="lm"):
            resolve_objective(name, ctx, b)
    with pytest.raises(ConfigError, match="objective"):
        resolve_objective("forget-harder", ctx, b)


def test_auto_is_calibrated_for_random_forget_sets_with_held_out_data() -> None:
    model, b = Logits(6), _batch()
    val = iter([_batch()])
    for scope, validation, want in (("random", val, "calibrated"), ("random", None, "other_class"),
                                    ("class", val, "other_class"), (None, val, "other_class")):
        ctx = UnlearnContext(model=model, reference=model, adapter=ClassifierAdapter(K), forget=iter(()),
                             retain=iter(()), validation=validation, forget_scope=scope)
        assert resolve_objective("auto", ctx, b) == want, (scope, validation)
    with pytest.raises(ConfigError, match="forget_scope"):
        UnlearnContext(model=model, reference=model, adapter=ClassifierAdapter(K), forget=iter(()),
                       retain=iter(()), forget_scope="half")


@pytest.mark.parametrize(("scenario", "want"), [("random10", "calibrated"), ("class:3", "other_class")])
def test_the_digits_benchmark_tells_ofmu_what_the_forget_set_is(tmp_path, caplog, scenario: str,
                                                                want: str) -> None:
    """`ofmu unlearn --benchmark digits --method ofmu` with the default objective: random forgetting
    resolves `auto` to `calibrated` (calibrated on the validation split), class-wise to `other_class`."""
    import logging

    from ofmu_opt.cli import main

    argv = ["unlearn", "--benchmark", "digits", "--scenario", scenario, "--method", "ofmu", "--quick",
            "--option", "steps=2", "--option", "experiment.train_steps=30", "--option", "experiment.hidden=16",
            "--out", str(tmp_path / "run"), "-q"]
    with caplog.at_level(logging.INFO, logger="ofmu_opt.unlearning.methods"):
        assert main(argv) == 0
    calibrated = [r for r in caplog.records if "held-out confidence" in r.getMessage()]
    assert len(calibrated) == (1 if want == "calibrated" else 0)
    import json

    rec = json.loads((tmp_path / "run" / "run.json").read_text())  # the resolved objective is recorded
    assert (rec["objective"], rec["family"], rec["inner_steps"]) == (want, "classifier", 1)


def test_target_gradient_is_large_where_ascent_is_nearly_stationary() -> None:
    """At a confident model the NLL gradient vanishes while the other-class objective's does not."""
    model, b = Logits(6), _batch()
    with torch.no_grad():
        model.table.zero_()
        model.table[torch.arange(6), b.y] = 12.0
    norms = {}
    for name in ("ascent", "other_class"):
        obj = make_objective(name, _ctx(model), b, ObjectiveOptions())
        (g,) = torch.autograd.grad(obj(model, b), [model.table])
        norms[name] = float(g.norm())
    assert norms["ascent"] < 1e-3 < 0.1 < norms["other_class"]


def test_calibrated_objective_gets_the_validation_split_through_the_cli(tmp_path, caplog) -> None:
    """`ofmu unlearn ... --option ofmu.objective=calibrated` (no target_* options): the runner hands OFMU the
    benchmark's validation stream, the objective calibrates on it and the run completes."""
    import logging

    from ofmu_opt.cli import main

    argv = ["unlearn", "--benchmark", "digits", "--scenario", "random10", "--method", "ofmu", "--quick",
            "--option", "objective=calibrated", "--option", "steps=2", "--option", "experiment.train_steps=30",
            "--option", "experiment.hidden=16", "--out", str(tmp_path / "run"), "-q"]
    with caplog.at_level(logging.INFO, logger="ofmu_opt.unlearning.methods.objectives"):
        assert main(argv) == 0
    msgs = [r.getMessage() for r in caplog.records if "held-out confidence" in r.getMessage()]
    assert len(msgs) == 1
    assert int(re.search(r"\((\d+) examples\)", msgs[0]).group(1)) > 0  # type: ignore[union-attr]
    assert (tmp_path / "run" / "DIGITS_SUMMARY.json").is_file()
    import json

    rec = json.loads((tmp_path / "run" / "run.json").read_text())  # OFMU's own gradient-evaluation count
    assert rec["grad_evals"] == rec["grad_evals_method"] + rec["grad_evals_diagnostics"]
    assert rec["grad_evals_method"] >= 2 * rec["grad_evals_per_round"] >= 2 * 3


def test_attach_validation_only_for_methods_that_read_it() -> None:
    from types import SimpleNamespace

    from ofmu_opt.unlearning.methods.ofmu import OfmuMethod
    from ofmu_opt.unlearning.runner import attach_validation

    x, y = torch.randn(10, 3), torch.arange(10) % 2
    prep = SimpleNamespace(data=SimpleNamespace(x_val=x, y_val=y), cfg=SimpleNamespace(batch_size=4), device="cpu")
    m = attach_validation(prep, OfmuMethod(), seed=1)
    b = next(m.validation)
    assert b.x.shape == (4, 3) and set(b.y.tolist()) <= {0, 1}
    other = SimpleNamespace()
    assert attach_validation(prep, other, seed=1) is other and not hasattr(other, "validation")
    no_val = OfmuMethod()
    attach_validation(SimpleNamespace(data=None), no_val, seed=1)
    assert no_val.validation is None


def test_family_and_auto_tell_qa_items_from_corpus_documents() -> None:
    """QA items with "I don't know" answers are the `qa` family (auto = idk_npo); corpus documents, whose
    idk answers are empty (they relabel without error), are `corpus` (auto = representation)."""
    from types import SimpleNamespace

    from ofmu_opt.unlearning.data.corpus import TextDoc
    from ofmu_opt.unlearning.data.qa import QAItem
    from ofmu_opt.unlearning.methods.objectives import family

    class LMStub:
        task = "lm"

        def relabel(self, batch, kind, generator):  # like CausalLMAdapter: fine whenever items are present
            return batch

    ctx = UnlearnContext(model=Logits(3), reference=Logits(3), adapter=LMStub(), forget=iter(()), retain=iter(()))
    item = QAItem(question="q", answer="a", paraphrased_answer="a", perturbed_answers=("b",))
    qa = SimpleNamespace(items=(item,) * 2)
    docs = SimpleNamespace(items=(TextDoc(text="some text"),) * 2)
    assert (family(ctx, qa), resolve_objective("auto", ctx, qa)) == ("qa", "idk_npo")
    assert (family(ctx, docs), resolve_objective("auto", ctx, docs)) == ("corpus", "representation")
    with pytest.raises(ConfigError, match="I don't know"):
        resolve_objective("idk", ctx, docs)
    assert family(_ctx(Logits(3)), _batch()) == "classifier"
