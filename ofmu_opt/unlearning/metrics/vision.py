"""The vision unlearning metrics: UA, RA, TA, MIA-efficacy, RTE, and gaps to Retrain.

- UA = 100 − accuracy (%) on the forget set; RA = accuracy on the retain set; TA = accuracy on the
  test set (on the remaining classes' test samples in class-wise forgetting).
- MIA-efficacy: an RBF SVC (C = 3, ``gamma="auto"``, i.e. 1/n_features = 1 on the one confidence
  feature, as in the SalUn / sparsity-unlearning code) is fit on the model's true-class confidence of a
  shadow set of retain samples (members, label 1, as many as there are non-member samples) against the
  non-member samples (the test set, label 0), then predicts the forget set; efficacy = % of forget
  samples predicted non-member. ``svc_gamma="scale"`` (1/(n_features·Var x), scikit-learn's default and
  this package's choice before) is available. The SVC is deterministic; the shadow draw takes an
  explicit seed.
- RTE: wall-clock seconds of the unlearning method (measured by the method's loop).
- gap_X = |X − X_retrain|; avg_gap = mean of the gaps over UA, RA, TA and MIA-efficacy.

Example:
    >>> rt = {"UA": 5.0, "RA": 100.0, "TA": 96.0, "MIA": 24.0}
    >>> gaps({"UA": 10.0, "RA": 99.0, "TA": 95.0, "MIA": 20.0}, rt)
    {'UA': 5.0, 'RA': 1.0, 'TA': 1.0, 'MIA': 4.0, 'avg_gap': 2.75}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from ..._config import check_choice
from ...errors import DataError

__all__ = [
    "GAP_METRICS",
    "SVC_GAMMAS",
    "accuracy",
    "gaps",
    "mia_efficacy",
    "predict",
    "true_class_confidence",
]

GAP_METRICS = ("UA", "RA", "TA", "MIA")
SVC_GAMMAS = ("auto", "scale")
"""The RBF width rules of the MIA's SVC: ``"auto"`` = 1/n_features (default), ``"scale"`` = 1/(n_features·Var x)."""


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = 512, device: Any = "cpu"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Predicted classes and softmax probabilities of ``model`` on ``x`` (eval mode, restored after)."""
    was = model.training
    model.eval()
    preds, probs = [], []
    try:
        for i in range(0, x.shape[0], batch_size):
            p = F.softmax(model(x[i : i + batch_size].to(device)).float(), dim=-1).cpu()
            probs.append(p)
            preds.append(p.argmax(-1))
    finally:
        model.train(was)
    if not probs:
        raise DataError("predict: expected a non-empty input, received 0 samples")
    return torch.cat(preds).numpy().astype(np.int64), torch.cat(probs).numpy().astype(np.float32)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: Any = "cpu") -> float:
    """Accuracy in percent."""
    pred, _ = predict(model, x, device=device)
    return float(100.0 * np.mean(pred == y.numpy()))


def true_class_confidence(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: Any = "cpu"
) -> npt.NDArray[np.float32]:
    """Softmax probability of the true class, per sample."""
    _, probs = predict(model, x, device=device)
    out: npt.NDArray[np.float32] = probs[np.arange(y.shape[0]), y.numpy()]
    return out


def mia_efficacy(
    member_conf: npt.NDArray[np.floating[Any]],
    nonmember_conf: npt.NDArray[np.floating[Any]],
    target_conf: npt.NDArray[np.floating[Any]],
    *,
    svc_gamma: str = "auto",
) -> tuple[float, npt.NDArray[np.int64]]:
    """Fit the RBF SVC (C = 3) on members (1) vs non-members (0); % of targets predicted non-member.

    Args:
        member_conf: true-class confidences of the shadow retain samples.
        nonmember_conf: true-class confidences of the non-member samples.
        target_conf: true-class confidences of the forget samples.
        svc_gamma: the SVC's RBF width rule, one of :data:`SVC_GAMMAS` (default ``"auto"``).

    Returns:
        ``(efficacy in %, per-target prediction 1 = member / 0 = non-member)``.

    Example:
        >>> import numpy as np
        >>> eff, pred = mia_efficacy(np.full(20, 0.99), np.linspace(0.1, 0.6, 20), np.array([0.99, 0.2]))
        >>> (eff, pred.tolist())
        (50.0, [1, 0])
    """
    from sklearn.svm import SVC

    check_choice("svc_gamma", svc_gamma, SVC_GAMMAS)
    if member_conf.size == 0 or nonmember_conf.size == 0 or target_conf.size == 0:
        raise DataError("mia_efficacy: expected non-empty member, non-member and target sets")
    xs = np.concatenate([member_conf, nonmember_conf]).astype(np.float64)[:, None]
    ys = np.concatenate([np.ones(member_conf.size), np.zeros(nonmember_conf.size)]).astype(np.int64)
    clf = SVC(C=3.0, kernel="rbf", gamma=svc_gamma)
    clf.fit(xs, ys)
    pred = clf.predict(target_conf.astype(np.float64)[:, None]).astype(np.int64)
    return float(100.0 * np.mean(pred == 0)), pred


def gaps(metrics: Mapping[str, float], retrain: Mapping[str, float]) -> dict[str, float]:
    """Absolute gap of each of UA, RA, TA, MIA to Retrain, and their mean ``avg_gap``."""
    out = {k: abs(float(metrics[k]) - float(retrain[k])) for k in GAP_METRICS}
    out["avg_gap"] = float(np.mean([out[k] for k in GAP_METRICS]))
    return out
