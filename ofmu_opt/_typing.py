"""Central type aliases. Vectors are backend objects (a numpy array, a tuple of tensors); the core only
passes them to a :class:`~ofmu_opt.problem.space.VectorSpace`."""

from __future__ import annotations

from typing import Any, TypeAlias

Vec: TypeAlias = Any
"""A vector of one block (x or y) as the backend represents it."""
Scalar: TypeAlias = Any
"""A scalar as the backend returns it (a Python float, or a 0-d tensor that stays on its device)."""
Batch: TypeAlias = Any
"""An opaque mini-batch handed unchanged to every oracle (``None`` = the full objective)."""
Pair: TypeAlias = tuple[Any, Any]
"""A point ``(x, y)`` of the joint space; ``x`` is ``None`` for simple bi-level problems."""
