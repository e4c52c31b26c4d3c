"""TorchSpace: the VectorSpace protocol on tensors and tuples of tensors, dtypes, devices, no host sync."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from ofmu_opt.backends.numpy_backend import NumpySpace
from ofmu_opt.backends.torch_backend import TorchSpace, as_tensor_vec
from ofmu_opt.errors import BackendError
from ofmu_opt.problem.space import VectorSpace

torch.set_num_threads(1)

SHAPES = [(3, 4), (5,), (2, 1, 3)]


def _tuple(seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in SHAPES)


def _flat(v: tuple[torch.Tensor, ...]) -> np.ndarray:
    return np.concatenate([t.double().reshape(-1).numpy() for t in v])


def test_is_a_vector_space() -> None:
    assert isinstance(TorchSpace(), VectorSpace)


@pytest.mark.parametrize("kind", ["tuple", "tensor"])
def test_operations_match_numpy_on_the_flattened_vector(kind: str) -> None:
    sp, npsp = TorchSpace(), NumpySpace()
    a, b = _tuple(0), _tuple(1)
    b = tuple(t.abs() + 0.5 for t in b)  # positive, for div and sqrt
    if kind == "tensor":
        a, b = (a[0],), (b[0],)
        A, B = a[0], b[0]
    else:
        A, B = a, b  # type: ignore[assignment]
    fa, fb = _flat(a), _flat(b)

    def F(v: object) -> np.ndarray:
        return _flat((v,)) if isinstance(v, torch.Tensor) else _flat(v)  # type: ignore[arg-type]

    tol = 4 * math.sqrt(np.finfo(np.float64).eps)
    np.testing.assert_allclose(F(sp.add(A, B)), npsp.add(fa, fb), rtol=tol)
    np.testing.assert_allclose(F(sp.sub(A, B)), npsp.sub(fa, fb), rtol=tol)
    np.testing.assert_allclose(F(sp.scale(A, 0.3)), 0.3 * fa, rtol=tol)
    np.testing.assert_allclose(F(sp.scale(A, torch.tensor(0.3, dtype=torch.float64))), 0.3 * fa, rtol=tol)
    np.testing.assert_allclose(F(sp.axpy(-0.7, A, B)), -0.7 * fa + fb, rtol=tol)
    np.testing.assert_allclose(F(sp.axpy(torch.tensor(-0.7, dtype=torch.float64), A, B)), -0.7 * fa + fb, rtol=tol)
    np.testing.assert_allclose(F(sp.mul(A, B)), fa * fb, rtol=tol)
    np.testing.assert_allclose(F(sp.div(A, B)), fa / fb, rtol=tol)
    np.testing.assert_allclose(F(sp.sqrt(B)), np.sqrt(fb), rtol=tol)
    np.testing.assert_allclose(F(sp.add_scalar(A, 2.0)), fa + 2.0, rtol=tol)
    np.testing.assert_allclose(F(sp.zeros_like(A)), np.zeros_like(fa))
    assert sp.to_float(sp.dot(A, B)) == pytest.approx(npsp.dot(fa, fb), rel=tol)
    assert sp.to_float(sp.norm(A)) == pytest.approx(npsp.norm(fa), rel=tol)
    assert sp.to_host(A) == pytest.approx(fa.tolist())
    assert sp.all_finite(A)
    assert sp.same_shape(A, B)
    assert not sp.same_shape(A, B[:1] if kind == "tensor" else B[:2])


def test_scalars_stay_on_device_as_tensors_and_inputs_are_not_mutated() -> None:
    sp = TorchSpace()
    a, b = _tuple(0), _tuple(1)
    before = [t.clone() for t in a]
    d, n = sp.dot(a, b), sp.norm(a)
    assert isinstance(d, torch.Tensor) and d.dim() == 0 and isinstance(n, torch.Tensor)
    sp.axpy(d, a, b)
    sp.scale(a, n)
    for t, u in zip(a, before, strict=True):
        assert torch.equal(t, u)


def test_all_finite_detects_nan_in_any_tensor() -> None:
    sp = TorchSpace()
    a = list(_tuple(0))
    a[2] = a[2].clone()
    a[2][0, 0, 1] = float("nan")
    assert not sp.all_finite(tuple(a))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_keeps_dtype_and_accumulates_dots_in_float32(dtype: torch.dtype) -> None:
    sp = TorchSpace()
    a, b = _tuple(0, dtype), _tuple(1, dtype)
    out = sp.axpy(0.5, a, b)
    assert all(t.dtype == dtype for t in out)
    d = sp.dot(a, b)
    assert d.dtype == torch.float32
    exact = float(np.dot(_flat(a), _flat(b)))  # of the rounded inputs, in float64
    assert sp.to_float(d) == pytest.approx(exact, rel=1e-5, abs=1e-5)
    assert sp.to_float(sp.norm(a)) == pytest.approx(float(np.linalg.norm(_flat(a))), rel=1e-5)
    # scaling by a float32 scalar tensor keeps the vectors' dtype
    assert all(t.dtype == dtype for t in sp.scale(a, sp.norm(a)))


def test_mixing_devices_raises_backend_error() -> None:
    sp = TorchSpace()
    a = torch.ones(3)
    b = torch.ones(3, device="meta")
    with pytest.raises(BackendError, match="different devices"):
        sp.add(a, b)
    with pytest.raises(BackendError, match="different devices"):
        sp.axpy(torch.tensor(2.0, device="meta"), a, a)
    with pytest.raises(BackendError, match="one device"):
        as_tensor_vec((torch.ones(2), torch.ones(2, device="meta")))


def test_mismatched_structures_raise_backend_error() -> None:
    sp = TorchSpace()
    with pytest.raises(BackendError, match="mix"):
        sp.add(torch.ones(2), (torch.ones(2),))
    with pytest.raises(BackendError, match="lengths"):
        sp.dot((torch.ones(2),), (torch.ones(2), torch.ones(1)))
    with pytest.raises(BackendError, match="TorchSpace.add"):
        sp.add(torch.ones(2), torch.ones(3))
    with pytest.raises(BackendError, match="floating"):
        as_tensor_vec(torch.ones(2, dtype=torch.int64))
    with pytest.raises(BackendError, match="tensor"):
        as_tensor_vec([1.0, 2.0])


def test_reduce_hook_is_applied_to_dot_and_norm() -> None:
    calls: list[float] = []

    def twice(s: torch.Tensor) -> torch.Tensor:  # stands for an all-reduce over 2 identical shards
        calls.append(float(s))
        return 2 * s

    sp = TorchSpace(reduce=twice)
    a = _tuple(0)
    plain = TorchSpace()
    assert sp.to_float(sp.dot(a, a)) == pytest.approx(2 * plain.to_float(plain.dot(a, a)))
    assert sp.to_float(sp.norm(a)) == pytest.approx(math.sqrt(2) * plain.to_float(plain.norm(a)))
    assert len(calls) == 2


def test_import_ofmu_opt_works_with_torch_blocked() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import ofmu_opt, ofmu_opt.backends, ofmu_opt.core, ofmu_opt.reference
        ref = ofmu_opt.get_reference("P4")
        res = ofmu_opt.with_continuation(ofmu_opt.gpbgd(), tol=1e-4).run(ref.problem, ref.x0, ref.y0)
        assert res.success, res.message
        try:
            import ofmu_opt.backends.torch_backend
        except ImportError:
            print("blocked")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "blocked"
