r"""Normalization layers written with elementary torch operations, for third-order derivatives.

torch's fused normalization kernels (``F.layer_norm``, ``F.group_norm``, ``F.batch_norm`` with batch
statistics, ``F.instance_norm``) save the mean and inverse standard deviation of the forward pass as
tensors *without autograd history*. Their hand-written double backward accounts for how those statistics
depend on the input, so first and second derivatives are right; but a third derivative — autograd
differentiating through that double backward, or forward-mode AD nested twice — treats them as
constants and comes out silently wrong (pytorch/pytorch#175754 for layer norm, #186256 for batch norm,
#196700 for nested forward-mode JVPs of layer norm; still so in torch 2.13). Measured here on torch
2.13 CPU, float64: ``gradgradcheck`` of the gradient of ``F.layer_norm`` fails, and on a one-layer
GPT-2 (HF ``GPT2LMHeadModel``, width 32) the third-order product ``∇(uᵀ∇²L v)`` of the token NLL
differs from a converged central difference of the exact HVP by 23 %; with these composite layers it
agrees to about 1e-9.

OFMU's exact Hessian-vector product of φ̃ = s·g + β·cos(−s∇g, ∇f) is third order in the model (the
cosine contains gradients), so :func:`composite_norms` is entered wherever a third derivative is formed
(:class:`~ofmu_opt.backends.torch_autodiff.AutodiffInner`'s exact HVP, ``TorchObjective.tvp``). It is
a :class:`torch.overrides.TorchFunctionMode` that routes those four functionals to the composite
versions below (same values to rounding, derivatives of every order correct) and leaves every other
call alone. Layers in evaluation mode with running statistics are affine maps and keep the fused
kernel. RMS norm (``F.rms_norm``) is composite in torch already and is not touched.

Example:
    >>> import torch
    >>> x = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> with composite_norms():
    ...     a = torch.nn.functional.layer_norm(x, (4,))
    >>> bool(torch.allclose(a, torch.nn.functional.layer_norm(x, (4,))))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = [
    "CompositeNorms",
    "batch_norm",
    "composite_norms",
    "group_norm",
    "instance_norm",
    "layer_norm",
]

_LOW = (torch.float16, torch.bfloat16)


def _up(x: Tensor) -> Tensor:
    """Half-precision inputs are normalized in float32, as the fused kernels do."""
    return x.float() if x.dtype in _LOW else x


def _normalize(x: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``((x − mean)/sqrt(var + eps), mean, biased var)`` over ``dims``."""
    mean = x.mean(dims, keepdim=True)
    c = x - mean
    var = (c * c).mean(dims, keepdim=True)
    return c * torch.rsqrt(var + eps), mean, var


def layer_norm(
    x: Tensor, normalized_shape: Sequence[int], weight: Tensor | None = None, bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """``F.layer_norm`` from elementary operations (derivatives of every order)."""
    dims = tuple(range(-len(tuple(normalized_shape)), 0))
    out, _, _ = _normalize(_up(x), dims, eps)
    if weight is not None:
        out = out * _up(weight)
    if bias is not None:
        out = out + _up(bias)
    return out.to(x.dtype)


def _channel_affine(out: Tensor, weight: Tensor | None, bias: Tensor | None, dtype: torch.dtype) -> Tensor:
    shape = (1, -1) + (1,) * (out.dim() - 2)
    if weight is not None:
        out = out * _up(weight).reshape(shape)
    if bias is not None:
        out = out + _up(bias).reshape(shape)
    return out.to(dtype)


def group_norm(
    x: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """``F.group_norm`` from elementary operations."""
    n = x.shape[0]
    grouped = _up(x).reshape(n, num_groups, -1)
    out, _, _ = _normalize(grouped, (-1,), eps)
    return _channel_affine(out.reshape(x.shape), weight, bias, x.dtype)


def _update_running(running: Tensor | None, stat: Tensor, momentum: float) -> None:
    if running is not None:
        with torch.no_grad():
            running.mul_(1.0 - momentum).add_(stat.detach().to(running.dtype), alpha=momentum)


def batch_norm(
    x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
    bias: Tensor | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
) -> Tensor:
    """``F.batch_norm`` from elementary operations when it normalizes by batch statistics (``training``
    or no running statistics); the running statistics are updated as the fused kernel does (momentum,
    unbiased variance). With running statistics in evaluation mode the fused kernel is used (an affine
    map: its derivatives are right to every order)."""
    if not training and running_mean is not None and running_var is not None:
        return F.batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps)
    dims = (0,) + tuple(range(2, x.dim()))
    out, mean, var = _normalize(_up(x), dims, eps)
    if training:
        count = x.numel() // x.shape[1]
        _update_running(running_mean, mean.reshape(-1), momentum)
        _update_running(running_var, var.reshape(-1) * (count / max(count - 1, 1)), momentum)
    return _channel_affine(out, weight, bias, x.dtype)


def instance_norm(
    x: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None, weight: Tensor | None = None,
    bias: Tensor | None = None, use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5,
) -> Tensor:
    """``F.instance_norm`` from elementary operations when it uses the input's statistics (the running
    statistics, if given, are updated with the batch average of the per-instance ones)."""
    if not use_input_stats:
        return F.instance_norm(x, running_mean, running_var, weight, bias, False, momentum, eps)
    dims = tuple(range(2, x.dim()))
    out, mean, var = _normalize(_up(x), dims, eps)
    count = max(x.numel() // (x.shape[0] * x.shape[1]), 1)
    _update_running(running_mean, mean.reshape(x.shape[0], -1).mean(0), momentum)
    _update_running(running_var, (var * (count / max(count - 1, 1))).reshape(x.shape[0], -1).mean(0), momentum)
    return _channel_affine(out, weight, bias, x.dtype)


_SWAP: dict[Callable[..., Any], Callable[..., Tensor]] = {
    F.layer_norm: layer_norm,
    F.group_norm: group_norm,
    F.batch_norm: batch_norm,
    F.instance_norm: instance_norm,
}


class CompositeNorms(TorchFunctionMode):
    """Routes ``F.layer_norm``/``group_norm``/``batch_norm``/``instance_norm`` to the composite versions."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        swap = _SWAP.get(func)
        return (swap or func)(*args, **(kwargs or {}))


def composite_norms() -> CompositeNorms:
    """A context manager under which the fused normalization functionals are composite (see the module
    docstring). Nesting is harmless."""
    return CompositeNorms()
