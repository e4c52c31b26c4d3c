"""Backends: vector spaces and autodiff oracles. numpy here; torch in :mod:`ofmu_opt.backends.torch_backend`
(imported lazily, only when asked for)."""

from .numpy_backend import NumpySpace, as_array

__all__ = ["NumpySpace", "as_array"]
