"""``from_host`` (the optional inverse of ``to_host``) on the built-in vector spaces."""

from __future__ import annotations

import numpy as np
import pytest

from ofmu_opt.backends.numpy_backend import NumpySpace


def test_numpy_from_host_inverts_to_host() -> None:
    sp = NumpySpace()
    a = np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5
    back = sp.from_host(sp.to_host(a), a)
    assert back.dtype == np.float32 and back.shape == (2, 3)
    np.testing.assert_array_equal(back, a)
    with pytest.raises(ValueError, match="5 values for a vector of 6"):
        sp.from_host([0.0] * 5, a)


def test_torch_from_host_inverts_to_host() -> None:
    torch = pytest.importorskip("torch")
    from ofmu_opt.backends.torch_backend import TorchSpace

    sp = TorchSpace()
    like = (torch.arange(6, dtype=torch.float64).reshape(2, 3), torch.tensor([7.0, 8.0]))
    back = sp.from_host(sp.to_host(like), like)
    assert isinstance(back, tuple) and len(back) == 2
    for got, want in zip(back, like, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)
    single = torch.tensor([1.5, -2.0], dtype=torch.float32)
    assert torch.equal(sp.from_host([1.5, -2.0], single), single)
    with pytest.raises(ValueError, match="3 values for a vector of 8"):
        sp.from_host([0.0] * 3, like)
