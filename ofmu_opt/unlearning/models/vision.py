"""Image classifiers defined in the package (MLP, small CNN, CIFAR ResNet-18) and their task adapter.

Every model is a sequence of ``blocks`` followed by a linear ``head``; ``features(x, layer)`` returns the
flattened activations after block ``layer`` (negative values count from the end, ``-1`` = the
penultimate features), which RMU steers. Models are built on the ``meta`` device and initialised with a
private ``torch.Generator``, so building one never touches torch's global random state.

:class:`ClassifierAdapter` implements :class:`~ofmu_opt.unlearning.methods.base.TaskAdapter` for these
models and :class:`~ofmu_opt.unlearning.data.common.LabeledBatch` batches.

Example:
    >>> import torch
    >>> m = build_model("mlp", (64,), 10, seed=0, hidden=16)
    >>> m(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    >>> torch.equal(m.head.weight, build_model("mlp", (64,), 10, seed=0, hidden=16).head.weight)
    True
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ..data.common import LabeledBatch

__all__ = ["MODEL_NAMES", "BasicBlock", "ClassifierAdapter", "MLP", "ResNet18", "SmallCNN", "build_model"]

MODEL_NAMES = ("mlp", "cnn", "resnet18")


class _Classifier(nn.Module):
    blocks: nn.ModuleList
    head: nn.Linear

    def forward(self, x: Tensor) -> Tensor:
        for b in self.blocks:
            x = b(x)
        return self.head(torch.flatten(x, 1))  # type: ignore[no-any-return]

    def features(self, x: Tensor, layer: int = -1) -> Tensor:
        """Flattened activations after block ``layer`` (``-1`` = the last block)."""
        n = len(self.blocks)
        idx = layer if layer >= 0 else n + layer
        if not 0 <= idx < n:
            raise ConfigError(f"layer: expected an index in [-{n}, {n - 1}], received {layer}")
        for b in self.blocks[: idx + 1]:
            x = b(x)
        return torch.flatten(x, 1)


class MLP(_Classifier):
    """A two-hidden-layer ReLU perceptron for flat inputs."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128, depth: int = 2) -> None:
        super().__init__()
        dims = [in_features] + [hidden] * depth
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(dims[i], dims[i + 1]), nn.ReLU()) for i in range(depth))
        self.head = nn.Linear(dims[-1], num_classes)


class SmallCNN(_Classifier):
    """Two 3×3 conv blocks (ReLU, 2×2 max-pool) and global average pooling, for small images."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
                nn.Sequential(nn.Conv2d(hidden, 2 * hidden, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)),
            ]
        )
        self.head = nn.Linear(2 * hidden, num_classes)


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3×3 conv + batch norm, identity or 1×1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        """Residual block output ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(_Classifier):
    """ResNet-18 with the CIFAR stem (one 3×3 conv, stride 1, no max-pool); ``width`` scales channels."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        w = width
        stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        )
        stages: list[nn.Module] = [stem]
        cin = w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        stages.append(nn.AdaptiveAvgPool2d(1))
        self.blocks = nn.ModuleList(stages)
        self.head = nn.Linear(cin, num_classes)


def _init_(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    seed: int,
    hidden: int = 128,
    device: Any = "cpu",
) -> nn.Module:
    """Build and initialise a classifier from a private generator seeded with ``seed``.

    Args:
        name: ``"mlp"`` (flat inputs), ``"cnn"`` or ``"resnet18"`` (``[C, H, W]`` inputs).
        input_shape: shape of one input.
        num_classes: number of outputs.
        seed: initialisation seed.
        hidden: hidden width (MLP units, CNN channels, ResNet base width).
        device: where the parameters live.

    Returns:
        The model, in training mode.

    Raises:
        ConfigError: unknown name, or an input shape the model cannot take.
    """
    if name not in MODEL_NAMES:
        raise ConfigError(f"model: expected one of {', '.join(MODEL_NAMES)}, received {name!r}")
    if hidden < 1 or num_classes < 2:
        raise ConfigError(f"hidden/num_classes: expected >= 1 / >= 2, received {hidden} / {num_classes}")
    with torch.device("meta"):
        if name == "mlp":
            model: nn.Module = MLP(int(math.prod(input_shape)), num_classes, hidden)
        else:
            if len(input_shape) != 3:
                raise ConfigError(f"model {name!r}: expected image inputs [C, H, W], received shape {input_shape}")
            if name == "cnn":
                model = SmallCNN(input_shape[0], num_classes, hidden)
            else:
                model = ResNet18(input_shape[0], num_classes, hidden)
    model = model.to_empty(device=device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        cpu_model = model if str(device) == "cpu" else None
        if cpu_model is not None:
            _init_(model, gen)
        else:  # initialise on the CPU so that results do not depend on the device's generator
            tmp = model.to("cpu")
            _init_(tmp, gen)
            model = tmp.to(device)
    return model


class ClassifierAdapter:
    """The task adapter for classifiers on :class:`LabeledBatch` batches (see ``methods/base.py``).

    ``per_example_nll`` is the cross-entropy, ``per_example_logprob`` the log-probability of the label,
    ``target_length`` is one per example, ``relabel("random")`` draws a uniformly random *wrong* label,
    ``hidden_states`` returns ``model.features(x, layer)``, and ``kl_to_reference`` is the mean over the
    batch of KL(p_ref || p_model) over classes.

    Args:
        num_classes: number of classes (for random relabelling).
    """

    task = "classifier"

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ConfigError(f"num_classes: expected >= 2, received {num_classes}")
        self.num_classes = num_classes

    def per_example_nll(self, model: nn.Module, batch: LabeledBatch) -> Tensor:
        """Cross-entropy per example, ``[B]``."""
        return F.cross_entropy(model(batch.x), batch.y, reduction="none")

    def per_example_logprob(self, model: nn.Module, batch: LabeledBatch) -> Tensor:
        """log p(label) per example, ``[B]``."""
        logp = F.log_softmax(model(batch.x), dim=-1)
        return logp.gather(1, batch.y[:, None]).squeeze(1)

    def target_length(self, batch: LabeledBatch) -> Tensor:
        """Ones, ``[B]`` (one target per example)."""
        return torch.ones(batch.y.shape[0], device=batch.y.device)

    def relabel(self, batch: LabeledBatch, kind: str, generator: torch.Generator) -> LabeledBatch:
        """Uniformly random wrong labels for ``kind="random"``; other kinds raise ConfigError."""
        if kind != "random":
            raise ConfigError(f"relabel kind: a classifier supports only 'random', received {kind!r}")
        shift = torch.randint(1, self.num_classes, (batch.y.shape[0],), generator=generator)
        y = (batch.y + shift.to(batch.y.device)) % self.num_classes
        return LabeledBatch(batch.x, y, batch.ids)

    def hidden_states(self, model: nn.Module, batch: LabeledBatch, layer: int) -> Tensor:
        """``model.features(x, layer)``: flattened activations after block ``layer``."""
        feats = getattr(model, "features", None)
        if feats is None:
            raise ConfigError(f"hidden_states: model {type(model).__name__} has no features(x, layer) method")
        return feats(batch.x, layer)  # type: ignore[no-any-return]

    def kl_to_reference(self, model: nn.Module, ref_model: nn.Module, batch: LabeledBatch) -> Tensor:
        """Mean over the batch of KL(p_ref || p_model) over classes (reference without grad)."""
        logp = F.log_softmax(model(batch.x), dim=-1)
        with torch.no_grad():
            logq = F.log_softmax(ref_model(batch.x), dim=-1)
        return (logq.exp() * (logq - logp)).sum(-1).mean()
