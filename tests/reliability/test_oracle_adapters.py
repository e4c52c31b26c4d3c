"""Python oracles that return the wrong thing or raise: every case is an OracleError naming the oracle and
what it returned, never a silent cast (complex -> real) or a foreign traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ofmu_opt.backends import NumpySpace
from ofmu_opt.core import gpbgd
from ofmu_opt.errors import OfmuError, OracleError
from ofmu_opt.problem import BilevelProblem, FunctionObjective
from ofmu_opt.problem.oracles import check_block, check_scalar, describe_value

SP = NumpySpace()


def _value(x: Any, y: Any, b: Any) -> float:
    return float(y @ y) / 2


def _grad(x: Any, y: Any, b: Any) -> tuple[Any, Any]:
    return None, y.copy()


def _boom(exc: BaseException) -> Callable[..., Any]:
    def f(*args: Any) -> Any:
        raise exc

    return f


# (id, which objective, value_fn or None (good), grad_fn or None (good), regex of the message)
NUMPY_CASES: list[tuple[str, str, Any, Any, str]] = [
    (
        "complex-gradient",
        "inner",
        None,
        lambda x, y, b: (None, y + 0j),
        r"inner\.grad: y-gradient: expected a real array, received complex",
    ),
    ("complex-gradient-tiny-imag", "outer", None, lambda x, y, b: (None, y + 1e-300j), r"outer\.grad.*complex"),
    (
        "complex-value",
        "outer",
        lambda x, y, b: complex(1, 1),
        None,
        r"outer\.value: expected a real scalar, received complex",
    ),
    ("numpy-complex-value", "outer", lambda x, y, b: np.complex128(1), None, r"outer\.value.*complex128"),
    (
        "object-array-gradient",
        "inner",
        None,
        lambda x, y, b: (None, np.array([object()] * y.size)),
        r"inner\.grad.*object values",
    ),
    (
        "str-array-gradient",
        "inner",
        None,
        lambda x, y, b: (None, np.array(["a"] * y.size)),
        r"inner\.grad.*string values",
    ),
    (
        "bytes-array-gradient",
        "inner",
        None,
        lambda x, y, b: (None, np.array([b"a"] * y.size)),
        r"inner\.grad.*bytes values",
    ),
    ("bool-array-gradient", "outer", None, lambda x, y, b: (None, y > 0), r"outer\.grad.*boolean values"),
    (
        "list-gradient",
        "inner",
        None,
        lambda x, y, b: (None, list(y)),
        r"inner\.grad: y-gradient: expected a numpy array.*a list of 3 items",
    ),
    ("scalar-gradient", "inner", None, lambda x, y, b: (None, 1.0), r"inner\.grad.*expected a numpy array.*float 1\.0"),
    ("2d-gradient", "inner", None, lambda x, y, b: (None, y[None, :]), r"inner\.grad: y-gradient has shape \(1, 3\)"),
    ("short-gradient", "outer", None, lambda x, y, b: (None, y[:2]), r"outer\.grad: y-gradient has shape \(2,\)"),
    ("gradient-not-a-pair", "inner", None, lambda x, y, b: y, r"inner\.grad: expected a pair.*ndarray of shape \(3,\)"),
    ("gradient-triple", "inner", None, lambda x, y, b: (None, y, y), r"inner\.grad: expected a pair.*tuple of 3"),
    ("gradient-none", "inner", None, lambda x, y, b: None, r"inner\.grad: expected a pair.*NoneType"),
    ("gradient-y-none", "outer", None, lambda x, y, b: (None, None), r"outer\.grad: the y-gradient is None"),
    (
        "value-string",
        "outer",
        lambda x, y, b: "zero",
        None,
        r"outer\.value: expected a real scalar, received str 'zero'",
    ),
    ("value-none", "outer", lambda x, y, b: None, None, r"outer\.value.*NoneType None"),
    (
        "value-vector",
        "outer",
        lambda x, y, b: y,
        None,
        r"outer\.value: expected a real scalar, received an ndarray of shape \(3,\)",
    ),
    ("value-bool", "outer", lambda x, y, b: True, None, r"outer\.value.*bool True"),
    ("value-object-array", "outer", lambda x, y, b: np.array(object()), None, r"outer\.value.*dtype object"),
    ("value-dict", "outer", lambda x, y, b: {"v": 1.0}, None, r"outer\.value.*builtins\.dict"),
    ("grad-raises-keyerror", "inner", None, _boom(KeyError("w")), r"inner\.grad raised KeyError: 'w'"),
    (
        "grad-raises-typeerror",
        "outer",
        None,
        _boom(TypeError("unsupported operand")),
        r"outer\.grad raised TypeError: unsupported",
    ),
    (
        "value-raises-zerodivision",
        "outer",
        _boom(ZeroDivisionError("division by zero")),
        None,
        r"outer\.value raised ZeroDivisionError",
    ),
    (
        "grad-raises-overflow",
        "inner",
        None,
        _boom(OverflowError("math range error")),
        r"inner\.grad raised OverflowError",
    ),
    ("grad-raises-memoryerror", "inner", None, _boom(MemoryError()), r"inner\.grad raised MemoryError$"),
    (
        "grad-raises-recursion",
        "inner",
        None,
        _boom(RecursionError("maximum recursion depth exceeded")),
        r"inner\.grad raised RecursionError",
    ),
    (
        "grad-raises-assertion",
        "outer",
        None,
        _boom(AssertionError("shape")),
        r"outer\.grad raised AssertionError: shape",
    ),
    ("grad-raises-stopiteration", "inner", None, _boom(StopIteration()), r"inner\.grad raised StopIteration"),
]


@pytest.mark.parametrize("case", NUMPY_CASES, ids=[c[0] for c in NUMPY_CASES])
def test_numpy_oracle_misbehaviour_is_an_oracle_error(case: tuple[str, str, Any, Any, str]) -> None:
    _, which, value_fn, grad_fn, pattern = case
    bad = FunctionObjective(value_fn or _value, grad_fn or _grad)
    good = FunctionObjective(_value, _grad)
    outer, inner = (bad, good) if which == "outer" else (good, bad)
    problem = BilevelProblem(outer, inner, SP, "min", has_x=False)
    with pytest.raises(OracleError, match=pattern) as info:
        gpbgd(maxiter=3).run(problem, None, np.ones(3))
    assert isinstance(info.value, OfmuError) and "Traceback" not in str(info.value)


def test_complex_gradient_never_reports_converged() -> None:
    """The original bug: the complex gradient was cast to real and the run reported converged."""
    bad = FunctionObjective(_value, lambda x, y, b: (None, y.astype(complex)))
    problem = BilevelProblem(FunctionObjective(_value, _grad), bad, SP, "min", has_x=False)
    with pytest.raises(OracleError, match="complex"):
        gpbgd().run(problem, None, np.ones(3))


def test_x_part_checks_with_an_outer_variable() -> None:
    def val(x: Any, y: Any, b: Any) -> float:
        return float(x @ x + y @ y)

    good = FunctionObjective(val, lambda x, y, b: (2 * x, 2 * y))
    for bad_grad, pattern in [
        (lambda x, y, b: (None, 2 * y), r"x-gradient is None, but the problem has an outer variable"),
        (lambda x, y, b: (2 * x + 0j, 2 * y), r"x-gradient: expected a real array, received complex"),
        (lambda x, y, b: (np.zeros(5), 2 * y), r"x-gradient has shape \(5,\)"),
    ]:
        problem = BilevelProblem(FunctionObjective(val, bad_grad), good, SP, "min", has_x=True)
        with pytest.raises(OracleError, match=pattern):
            gpbgd(maxiter=3).run(problem, np.ones(2), np.ones(3))


def test_hvp_oracle_results_are_checked() -> None:
    hvp_cases = [
        (lambda x, y, v, b: (None, v + 0j), r"inner\.hvp: y-part: expected a real array, received complex"),
        (lambda x, y, v, b: (None, v[:1]), r"inner\.hvp: y-part has shape \(1,\)"),
        (lambda x, y, v, b: v, r"inner\.hvp: expected a pair"),
        (_boom(IndexError("index 3 is out of bounds")), r"inner\.hvp raised IndexError: index 3"),
    ]
    for hvp, pattern in hvp_cases:
        inner = FunctionObjective(_value, _grad, hvp_fn=hvp)
        problem = BilevelProblem(FunctionObjective(_value, _grad), inner, SP, "min", has_x=False)
        with pytest.raises(OracleError, match=pattern):
            gpbgd(maxiter=5, hvp="exact").run(problem, None, np.ones(3))


def test_good_oracles_in_every_accepted_form_run() -> None:
    """Accepted: Python/numpy real scalars, 0-d arrays, integer arrays (exact), None HVP parts."""
    for value_fn in (
        lambda x, y, b: float(y @ y) / 2,
        lambda x, y, b: np.float32(y @ y / 2),
        lambda x, y, b: np.array(y @ y / 2),
        lambda x, y, b: int(round(float(y @ y))),
    ):
        obj = FunctionObjective(value_fn, _grad)
        res = gpbgd(maxiter=5).run(
            BilevelProblem(obj, FunctionObjective(_value, _grad), SP, "min", has_x=False), None, np.ones(3)
        )
        assert res.nit >= 1
    int_grad = FunctionObjective(_value, lambda x, y, b: (None, np.rint(y).astype(np.int64)))
    res = gpbgd(maxiter=3).run(
        BilevelProblem(FunctionObjective(_value, _grad), int_grad, SP, "min", has_x=False), None, np.ones(3)
    )
    assert res.nit >= 1


def test_describe_value_and_unit_checks() -> None:
    assert describe_value("x" * 100).endswith("...")
    assert describe_value(np.zeros((2, 2), dtype=np.float32)) == "an ndarray of shape (2, 2), dtype float32"
    assert check_scalar(np.array(2.0), "v") == 2.0
    with pytest.raises(OracleError, match=r"v: expected a real scalar, received a numpy bool"):
        check_scalar(np.bool_(True), "v")
    check_block([np.zeros(2), np.zeros(3)], (np.ones(2), np.ones(3)), "g")
    with pytest.raises(OracleError, match=r"g\[1\] has shape \(2,\)"):
        check_block([np.zeros(2), np.zeros(2)], (np.ones(2), np.ones(3)), "g")
    with pytest.raises(OracleError, match="expected real values, received complex"):
        check_block(1j, 1.0, "g")  # an unknown vector type: only complex numbers are refused


# ----------------------------------------------------------------------------------------- torch


def test_torch_oracle_results_are_checked() -> None:
    torch = pytest.importorskip("torch")
    from ofmu_opt.problem.oracles import CallCounter, CountingObjective

    y = (torch.ones(3), torch.ones(2))

    def wrap(grad: Any) -> CountingObjective:
        return CountingObjective(FunctionObjective(lambda x, yy, b: torch.tensor(0.0), grad), "g", CallCounter())

    cases = [
        (
            lambda x, yy, b: (None, (torch.ones(3, dtype=torch.int64), torch.ones(2))),
            r"y-gradient\[0\].*floating tensor, received dtype torch\.int64",
        ),
        (
            lambda x, yy, b: (None, (torch.ones(3, dtype=torch.complex64), torch.ones(2))),
            r"torch\.complex64 \(complex\)",
        ),
        (lambda x, yy, b: (None, (torch.ones(3), torch.ones(4))), r"y-gradient\[1\] has shape \(4,\), expected \(2,\)"),
        (lambda x, yy, b: (None, (torch.ones(3),)), r"expected 2 blocks like the point, received a tuple of 1"),
        (lambda x, yy, b: (None, (np.ones(3), torch.ones(2))), r"y-gradient\[0\]: expected a tensor.*ndarray"),
        (
            lambda x, yy, b: (None, (torch.ones(3, device="meta"), torch.ones(2))),
            r"y-gradient\[0\] is on meta, expected cpu",
        ),
    ]
    for grad, pattern in cases:
        with pytest.raises(OracleError, match=pattern):
            wrap(grad).grad(None, y)
    for value, pattern in [
        (torch.ones(2)[None], r"inner\.value: expected a real scalar, received a tensor of shape \(1, 2\)"),
        (torch.tensor(1), r"inner\.value.*dtype torch\.int64"),
        (torch.tensor(1 + 1j), r"inner\.value.*complex"),
    ]:
        obj = CountingObjective(FunctionObjective(lambda x, yy, b, v=value: v, _grad), "g", CallCounter())
        with pytest.raises(OracleError, match=pattern):
            obj.value(None, y)


def test_torch_loss_and_module_helpers() -> None:
    torch = pytest.importorskip("torch")
    from ofmu_opt.problem.oracles import check_module_device, check_torch_loss

    w = torch.ones(2, requires_grad=True)
    assert check_torch_loss((w * w).sum(), "loss") is not None
    with pytest.raises(OracleError, match=r"loss: the returned tensor is detached.*\.detach\(\)"):
        check_torch_loss((w * w).sum().detach(), "loss")
    with pytest.raises(OracleError, match=r"loss: expected a scalar tensor, received float"):
        check_torch_loss(float((w * w).sum().detach()), "loss")
    with pytest.raises(OracleError, match=r"one-element floating tensor.*torch\.int64"):
        check_torch_loss(torch.tensor(3), "loss")
    check_module_device(torch.nn.Linear(2, 2), "model")
    with pytest.raises(OracleError, match=r"model: weight is on the meta device"):
        check_module_device(torch.nn.Linear(2, 2, device="meta"), "model")
