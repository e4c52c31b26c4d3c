"""Constraint sets and inequality constraints: projections, violations, validation, problem fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ofmu_opt as oo
from ofmu_opt.backends import NumpySpace
from ofmu_opt.errors import OracleError, ProblemSpecError
from ofmu_opt.problem import BilevelProblem, FunctionObjective, constraint_values, feasibility

RNG = np.random.default_rng(0)


def _is_projection(s: object, v: np.ndarray) -> None:
    p = s.project(v)  # type: ignore[attr-defined]
    assert s.violation(p) <= 1e-9  # type: ignore[attr-defined]
    np.testing.assert_allclose(s.project(p), p, atol=1e-12)  # type: ignore[attr-defined]
    # variational inequality of a Euclidean projection onto a convex set: <v - p, w - p> <= 0 for w in the set
    for _ in range(20):
        w = s.project(RNG.normal(size=v.shape) * 3)  # type: ignore[attr-defined]
        assert float(np.vdot(v - p, w - p)) <= 1e-9


@pytest.mark.parametrize(
    "s",
    [oo.Box(-1.0, 2.0), oo.Box(np.array([0.0, -1.0, -np.inf]), np.array([1.0, 0.0, 0.5])), oo.NonNegative(),
     oo.Ball(1.5), oo.Ball(0.5, center=np.array([1.0, 0.0, 0.0])), oo.Simplex(), oo.Simplex(2.0),
     oo.Affine(np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]]), np.array([1.0, 0.0]))],
)
def test_projections_are_euclidean(s: object) -> None:
    for _ in range(10):
        _is_projection(s, RNG.normal(size=3) * 4)


def test_violations_measure_distance_to_each_condition() -> None:
    assert oo.Box(0.0, 1.0).violation(np.array([-0.5, 3.0])) == 2.0
    assert oo.NonNegative().violation(np.array([1.0, 2.0])) == 0.0
    assert oo.Simplex().violation(np.array([0.2, 0.2])) == pytest.approx(0.6)
    assert oo.Affine(np.array([[1.0, 1.0]]), np.array([1.0])).violation(np.array([2.0, 2.0])) == 3.0
    u = oo.UserProjection(lambda v: np.maximum(v, 1.0))
    assert u.violation(np.array([0.0, 1.0])) == 1.0 and u.contains(np.array([2.0]))


@pytest.mark.parametrize(
    "make, match",
    [(lambda: oo.Box(1.0, 0.0), "lower <= upper"), (lambda: oo.Box(float("nan"), 1.0), "Box.lower"),
     (lambda: oo.Ball(-1.0), "radius"), (lambda: oo.Ball(math.inf), "radius"), (lambda: oo.Simplex(0.0), "total"),
     (lambda: oo.Affine(np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([1.0, 3.0])), "empty"),
     (lambda: oo.Affine(np.array([1.0, 1.0]), np.array([1.0])), "2-D"),
     (lambda: oo.UserProjection(3), "callable"),  # type: ignore[arg-type]
     (lambda: oo.FunctionConstraints(lambda x, y: [0.0], 1), "jac_fn or vjp_fn"),
     (lambda: oo.FunctionConstraints(lambda x, y: [0.0], 0, vjp_fn=lambda x, y, m: (None, y)), "count"),
     (lambda: oo.LinearConstraints(np.ones((2, 3)), np.ones(3)), "shape")],
)
def test_bad_constraint_input_is_a_clear_error(make: object, match: str) -> None:
    with pytest.raises(ProblemSpecError, match=match):
        make()  # type: ignore[operator]


def test_box_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ProblemSpecError, match="does not broadcast"):
        oo.Box(np.zeros(2), np.ones(2)).project(np.zeros(3))


def test_function_constraints_vjp_from_jacobians_and_value_count() -> None:
    c = oo.FunctionConstraints(
        lambda x, y: np.array([x[0] + y[0] - 1.0, -y[1]]), 2,
        jac_fn=lambda x, y: (np.array([[1.0], [0.0]]), np.array([[1.0, 0.0], [0.0, -1.0]])),
    )
    gx, gy = c.vjp(np.array([0.5]), np.array([1.0, 2.0]), (2.0, 3.0))
    assert gx.tolist() == [2.0] and gy.tolist() == [2.0, -3.0]
    assert constraint_values(c, np.array([0.5]), np.array([1.0, 2.0])) == (0.5, -2.0)
    bad = oo.FunctionConstraints(lambda x, y: [1.0, 2.0, 3.0], 2, jac_fn=lambda x, y: (None, np.eye(2)))
    with pytest.raises(OracleError, match="expected 2 values"):
        constraint_values(bad, None, np.zeros(2))
    with pytest.raises(OracleError, match="multipliers"):
        c.vjp(np.array([0.5]), np.array([1.0, 2.0]), (1.0,))


def test_linear_constraints_value_and_vjp() -> None:
    c = oo.LinearConstraints(a_y=np.array([[1.0, 2.0]]), b=np.array([3.0]), a_x=np.array([[-1.0]]))
    assert c.value(np.array([1.0]), np.array([1.0, 1.0])).tolist() == [-1.0]
    gx, gy = c.vjp(np.array([1.0]), np.array([1.0, 1.0]), (2.0,))
    assert gx.tolist() == [-2.0] and gy.tolist() == [2.0, 4.0]


def _quad() -> FunctionObjective:
    return FunctionObjective(lambda x, y, b: float(y @ y), lambda x, y, b: (None if x is None else 0 * x, 2 * y))


def test_problem_fields_default_to_none_and_are_validated() -> None:
    p = BilevelProblem(_quad(), _quad(), NumpySpace())
    assert (p.x_set, p.y_set, p.inner_constraints, p.outer_constraints) == (None, None, None, None)
    assert not p.constrained and feasibility(p, np.zeros(1), np.zeros(2)) == {}
    with pytest.raises(ProblemSpecError, match="y_set"):
        BilevelProblem(_quad(), _quad(), NumpySpace(), y_set="box")  # type: ignore[arg-type]
    with pytest.raises(ProblemSpecError, match="x_set"):
        BilevelProblem(_quad(), _quad(), NumpySpace(), has_x=False, x_set=oo.Box(0.0, 1.0))
    with pytest.raises(ProblemSpecError, match="inner_constraints"):
        BilevelProblem(_quad(), _quad(), NumpySpace(), inner_constraints=object())  # type: ignore[arg-type]


def test_feasibility_reports_each_constraint() -> None:
    c = oo.LinearConstraints(a_y=np.array([[1.0, 1.0]]), b=np.array([1.0]))
    p = BilevelProblem(_quad(), _quad(), NumpySpace(), x_set=oo.Box(0.0, 1.0), y_set=oo.NonNegative(),
                       inner_constraints=c, outer_constraints=c)
    rep = feasibility(p, np.array([2.0]), np.array([-1.0, 3.0]))
    assert rep == {"x_set": 1.0, "y_set": 1.0, "inner_constraints": 1.0, "outer_constraints": 1.0}


def test_torch_tensors_and_blocks_are_projected_in_place_of_type() -> None:
    torch = pytest.importorskip("torch")
    t = torch.tensor([-1.0, 0.5, 3.0], dtype=torch.float32)
    out = oo.Box(0.0, 1.0).project(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.tolist() == [0.0, 0.5, 1.0]
    s = oo.Simplex().project(torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64))
    assert s.dtype == torch.float64 and s.tolist() == [0.0, 0.0, 1.0]
    blocks = (torch.tensor([3.0]), torch.tensor([4.0]))
    b = oo.Ball(1.0).project(blocks)
    assert isinstance(b, tuple) and math.isclose(float(b[0]) ** 2 + float(b[1]) ** 2, 1.0, rel_tol=1e-6)
    with pytest.raises(ProblemSpecError, match="single array"):
        oo.Simplex().project(blocks)
