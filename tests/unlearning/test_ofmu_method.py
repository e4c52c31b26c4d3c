"""The OFMU unlearning method on the method contract: registry, config checks, a digits run, determinism,
and agreement of one method round with the generic solver driven by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ofmu_opt.backends.torch_module import ModuleBatch, module_problem
from ofmu_opt.core.solver import RoundBatches
from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.data.common import BatchStream
from ofmu_opt.unlearning.experiment import VisionExperimentConfig, load_data, run_method, train_classifier
from ofmu_opt.unlearning.methods.base import UnlearnContext
from ofmu_opt.unlearning.methods.objectives import ObjectiveOptions, make_objective
from ofmu_opt.unlearning.methods.ofmu import OfmuConfig, OfmuMethod
from ofmu_opt.unlearning.methods.registry import get_method, make_method
from ofmu_opt.unlearning.models.vision import ClassifierAdapter, build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    cfg = VisionExperimentConfig(hidden=16, train_steps=120, batch_size=16, diagnostics_every=1)
    data = load_data(cfg)
    model = build_model("mlp", (64,), 10, seed=0, hidden=16)
    x = torch.cat([data.x_forget, data.x_retain])
    y = torch.cat([data.y_forget, data.y_retain])
    train_classifier(model, x, y, steps=120, lr=3e-3, batch_size=32, seed=0, device=torch.device("cpu"))
    return cfg, data, model


def _params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_registry_resolves_ofmu() -> None:
    spec = get_method("ofmu")
    assert spec.method_cls is OfmuMethod and spec.config_cls is OfmuConfig
    m = make_method("ofmu", {"steps": "2", "beta": "0.2", "hvp": "forget_hessian", "scale_step_by_penalty": "none"})
    assert m.config.steps == 2 and m.config.beta == 0.2 and m.config.scale_step_by_penalty is None


def test_one_name_per_knob() -> None:
    """The solver's options keep the solver's names; lr/optimizer/steps are the only translations."""
    fields = set(OfmuConfig.__dataclass_fields__)
    assert not fields & {"outer_lr", "outer_rule", "growth"}
    c = OfmuConfig(lr=0.02, optimizer="sgd", steps=7, penalty_growth=1.2, penalty=0.5, penalty_max=4.0)
    s = c.solver(unit=2.0)
    assert (s.outer_lr, s.outer_rule, s.maxiter, s.penalty_growth) == (0.02, "sgd", 7, 1.2)
    assert (s.penalty, s.penalty_max) == (1.0, 8.0)
    with pytest.raises(ConfigError, match="outer_lr"):
        make_method("ofmu", {"outer_lr": "0.1"})


def test_step_not_divided_by_penalty_for_adam() -> None:
    assert not OfmuConfig(optimizer="adam").solver().scale_step_by_penalty
    assert OfmuConfig(optimizer="sgd").solver().scale_step_by_penalty
    assert OfmuConfig(optimizer="adam", scale_step_by_penalty=True).solver().scale_step_by_penalty


def test_value_gap_runs_as_the_weighted_sum_without_inner_steps() -> None:
    c = OfmuConfig(penalty_type="value_gap", inner_steps=5)
    s = c.solver()
    assert s.penalty_type == "weighted_sum" and s.inner_steps == 0 and c.effective_inner_steps == 0


@pytest.mark.parametrize(
    "options,match",
    [({"beta": -1}, "beta"), ({"hvp": "gauss"}, "hvp"), ({"similarity": "cos"}, "similarity"),
     ({"weight_decay": 0.1}, "weight_decay"), ({"penalty_max": 0.001}, "penalty_max"),
     ({"inner_rule": "lbfgs"}, "inner_rule"), ({"params": "some"}, "params"), ({"accumulation": 0}, "accumulation"),
     ({"objective": "forget"}, "objective"), ({"inner_state": "maybe"}, "inner_state"),
     ({"penalty_type": "quadratic"}, "penalty_type"), ({"npo_beta": 0}, "npo_beta"),
     ({"retain_loss": "mse"}, "retain_loss"), ({"retain_loss": "kl", "beta": 0.1}, "retain_loss")],
)
def test_config_range_checks(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_method("ofmu", options)


def test_search_space_names_config_fields() -> None:
    fields = set(OfmuConfig.__dataclass_fields__)
    assert set(OfmuConfig.SEARCH_SPACE) <= fields


@pytest.mark.parametrize("hvp", ["exact", "finite_difference", "forget_hessian"])
def test_runs_records_diagnostics_and_raises_the_forget_loss(setup, hvp: str) -> None:
    cfg, data, original = setup
    method = make_method("ofmu", {"steps": 4, "lr": 1e-2, "inner_lr": 0.05, "inner_steps": 2, "hvp": hvp})
    before = _params(original)
    res = run_method(method, original, data, cfg, torch.device("cpu"), seed=0)
    assert res.status == "completed" and res.steps == 4
    assert torch.equal(before, _params(original))
    assert not torch.equal(before, _params(res.model))
    assert [r.step for r in res.history] == [0, 1, 2, 3]
    assert all(-1 <= r.cos <= 1 and r.penalty is not None and r.penalty >= 0 for r in res.history)
    assert all(math.isfinite(r.loss) for r in res.history)
    adapter = ClassifierAdapter(data.splits.num_classes)

    def forget_nll(m: torch.nn.Module) -> float:
        m.eval()
        with torch.no_grad():
            return float(adapter.per_example_nll(m, next(BatchStream(data.x_forget, data.y_forget, 10**6, 0))).mean())

    assert forget_nll(copy.deepcopy(res.model)) > forget_nll(copy.deepcopy(original))


def test_same_seed_same_result(setup) -> None:
    cfg, data, original = setup
    runs = [run_method(make_method("ofmu", {"steps": 3, "inner_steps": 1}), original, data, cfg, "cpu", seed=2)
            for _ in range(2)]
    assert torch.equal(_params(runs[0].model), _params(runs[1].model))


@pytest.mark.parametrize("objective", ["ascent", "other_class"])
def test_one_method_round_equals_the_generic_solver_by_hand(setup, objective: str) -> None:
    """The method's round (own inner loop, then the solver's outer step from the inner result) is the
    solver's base='inner' round, for the paper's objective and a target objective (raw penalty units)."""
    cfg, data, original = setup
    c = OfmuConfig(steps=1, inner_steps=2, lr=1e-2, inner_lr=0.05, optimizer="sgd", inner_rule="sgd",
                   objective=objective, penalty_scale="raw", penalty=1.0, penalty_max=100.0)
    adapter = ClassifierAdapter(data.splits.num_classes)

    def streams(seed: int) -> tuple[BatchStream, BatchStream]:
        return (BatchStream(data.x_forget, data.y_forget, 16, seed=seed),
                BatchStream(data.x_retain, data.y_retain, 16, seed=seed + 1))

    model = copy.deepcopy(original)
    f, r = streams(5)
    ctx = UnlearnContext(model=model, reference=copy.deepcopy(original), adapter=adapter, forget=f, retain=r)
    OfmuMethod(c).run(ctx)

    by_hand = copy.deepcopy(original)
    by_hand.train()
    f, r = streams(5)
    inner = tuple(ModuleBatch(next(f), next(r)) for _ in range(2))
    outer = ModuleBatch(next(f), next(r))
    obj = make_objective(objective, ctx, outer.forget, ObjectiveOptions())
    mp = module_problem(by_hand, obj, None, None, default_batch=outer,
                        retain_loss=lambda m, b: adapter.per_example_nll(m, b).mean())
    solver = c.solver()
    assert solver.base == "inner" and solver.inner_steps == 2
    state = solver.init_state(mp.problem, None, mp.y0)
    state = solver.update(mp.problem, state, batch=RoundBatches(inner=inner, outer=outer))
    got = dict(model.named_parameters())
    for name, t in zip(mp.names, state.y, strict=True):
        torch.testing.assert_close(got[name].detach(), t, rtol=1e-6, atol=1e-7)


def _adam_inner_rounds(setup, inner_state: str) -> tuple[torch.Tensor, ...]:
    cfg, data, original = setup
    c = OfmuConfig(steps=3, inner_steps=2, inner_rule="adam", inner_state=inner_state, beta=0.0, lr=1e-3,
                   inner_lr=1e-2)
    res = run_method(OfmuMethod(c), original, data, cfg, torch.device("cpu"), seed=1)
    return tuple(p.detach().clone() for p in res.model.parameters())


def test_inner_adam_state_kept_across_rounds_changes_the_run(setup) -> None:
    keep, reset = _adam_inner_rounds(setup, "keep"), _adam_inner_rounds(setup, "reset")
    assert any(not torch.equal(a, b) for a, b in zip(keep, reset, strict=True))


@pytest.mark.parametrize("ptype", ["none", "weighted_sum"])
def test_ablations_run_and_raise_the_forget_objective(setup, ptype: str) -> None:
    cfg, data, original = setup
    method = make_method("ofmu", {"steps": 6, "penalty_type": ptype, "inner_steps": 2, "lr": 1e-2,
                                  "inner_lr": 1e-2, "penalty": 5.0})
    res = run_method(method, original, data, cfg, torch.device("cpu"), seed=0)
    assert res.status == "completed" and res.steps == 6
    b = next(BatchStream(data.x_forget, data.y_forget, 10**6, 0))
    adapter = ClassifierAdapter(data.splits.num_classes)
    ctx = UnlearnContext(model=original, reference=original, adapter=adapter, forget=iter(()), retain=iter(()))
    phi = make_objective("other_class", ctx, b, ObjectiveOptions())
    with torch.no_grad():
        after, before = float(phi(res.model.eval(), b)), float(phi(copy.deepcopy(original).eval(), b))
    assert after > before


@pytest.mark.slow
def test_default_forgets_digits_class_through_the_cli(tmp_path) -> None:
    """Issue #14's acceptance run: default options, --quick, seed 0: UA >= 95 and |gap_TA| <= 2."""
    import json

    from ofmu_opt.cli import main

    rc = main(["unlearn", "--benchmark", "digits", "--scenario", "class:3", "--method", "ofmu", "--quick",
               "--seed", "0", "--out", str(tmp_path / "run"), "-q"])
    assert rc == 0
    summary = json.loads((tmp_path / "run" / "DIGITS_SUMMARY.json").read_text())
    assert summary["UA"] >= 95.0 and abs(summary["gap_TA"]) <= 2.0


def test_reverse_pass_counter_counts_grad_and_backward_calls() -> None:
    from ofmu_opt.unlearning.methods.ofmu import ReversePassCounter

    x = torch.ones(3, requires_grad=True)
    with ReversePassCounter() as c:
        g, = torch.autograd.grad((x ** 3).sum(), x, create_graph=True)
        torch.autograd.grad(g.sum(), x)  # the second pass of a double-backward HVP
        (2 * x).sum().backward()
    assert c.count == 3
    (3 * x).sum().backward()  # outside the block: not counted
    with c:
        torch.autograd.backward((x * x).sum())
    assert c.count == 4


@pytest.mark.parametrize("options", [{}, {"penalty_type": "none"}, {"inner_steps": 0, "beta": 0.0},
                                     {"inner_steps": 3, "inner_state": "reset"}])
def test_gradient_evaluations_booked_after_two_rounds_equal_a_full_count(setup, monkeypatch, options) -> None:
    """OFMU counts its reverse passes in the first rounds and books later rounds at the last counted
    round's count; counting every round gives the same numbers (and more passes per round with more
    inner steps)."""
    cfg, data, original = setup
    c = OfmuConfig(steps=5, **options)
    short = run_method(OfmuMethod(c), original, data, cfg, torch.device("cpu"), seed=0).info
    monkeypatch.setattr(OfmuMethod, "counted_rounds", 10**6)
    full = run_method(OfmuMethod(c), original, data, cfg, torch.device("cpu"), seed=0).info
    keys = ("grad_evals", "grad_evals_method", "grad_evals_diagnostics", "grad_evals_per_round")
    assert [short[k] for k in keys] == [full[k] for k in keys]
    assert (short["grad_evals_counted_rounds"], full["grad_evals_counted_rounds"]) == (2, 5)
    assert full["grad_evals"] == full["grad_evals_method"] + full["grad_evals_diagnostics"]
    assert full["grad_evals_diagnostics"] == 2 * 5  # diagnostics_every=1: ∇L_f and ∇L_r each step
    assert full["grad_evals_per_round"] >= 1 + c.effective_inner_steps
    assert full["grad_evals_method"] >= 5 * full["grad_evals_per_round"]


def test_family_defaults_fill_only_the_unset_options() -> None:
    from ofmu_opt.unlearning.methods.ofmu import FAMILY_DEFAULTS

    qa = FAMILY_DEFAULTS["qa"]
    c = OfmuConfig().resolved("qa")
    assert (c.objective, c.inner_steps, c.penalty) == (qa["objective"], qa["inner_steps"], qa["penalty"])
    mine = OfmuConfig(objective="idk", inner_steps=5, penalty=2.0).resolved("qa")
    assert (mine.objective, mine.inner_steps, mine.penalty) == ("idk", 5, 2.0)
    cl = OfmuConfig().resolved("classifier")
    assert (cl.objective, cl.inner_steps, cl.penalty) == ("auto", 1, 0.1)  # auto = other_class at run time
    assert OfmuConfig().solver().penalty == FAMILY_DEFAULTS["generic"]["penalty"]
    with pytest.raises(ConfigError, match="family"):
        OfmuConfig().resolved("vision")
    with pytest.raises(ConfigError, match="penalty_max"):
        OfmuConfig(penalty=0.5, penalty_max=0.1)


def test_run_reports_the_family_and_resolved_options(setup) -> None:
    cfg, data, original = setup
    info = run_method(OfmuMethod(OfmuConfig(steps=2)), original, data, cfg, torch.device("cpu"), seed=0).info
    got = (info["family"], info["objective"], info["inner_steps"], info["rho0"])
    assert got == ("classifier", "other_class", 1, 0.1)
