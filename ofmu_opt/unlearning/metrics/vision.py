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

Examples:
    >>> rt = {"UA": 5.0, "RA": 100.0, "TA": 96.0, "MIA": 24.0}
    >>> gaps({"UA": 10.0, "RA": 99.0, "TA": 95.0, "MIA": 20.0}, rt)
    {'UA': 5.0, 'RA': 1.0, 'TA': 1.0, 'MIA': 4.0, 'avg_gap': 2.75}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from ..._config import check_choice
from ...errors import DataError
from .registry import Entry, Evaluation, MetricRegistry, entry

__all__ = [
    "GAP_METRICS",
    "SVC_GAMMAS",
    "VISION",
    "VisionEvalContext",
    "evaluate_vision",
    "accuracy",
    "gaps",
    "mia_efficacy",
    "predict",
    "true_class_confidence",
]

log = logging.getLogger(__name__)

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

    Examples:
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


# ----------------------------------------------------------------------------- the vision family on the registry


@dataclass
class VisionEvalContext:
    """What the vision metrics evaluate: a classifier and its forget, retain and evaluation samples.

    Attributes:
        model: the classifier (eval mode during the passes, restored after).
        x_forget, y_forget: the forget samples.
        x_retain, y_retain: the retain samples.
        x_eval, y_eval: the evaluation samples (test, or validation for the selection proxy); they are
            the MIA's non-members.
        eval_keep: boolean mask of the evaluation samples TA counts (class-wise forgetting drops the class).
        shadow: indices of the retain samples used as the MIA's members.
        forget_idx: the forget samples' training indices (keys of the per-sample values).
        device: where the passes run.
        svc_gamma: the MIA SVC's RBF width rule (:data:`SVC_GAMMAS`).
    """

    model: nn.Module
    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_retain: torch.Tensor
    y_retain: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    eval_keep: npt.NDArray[np.bool_]
    shadow: npt.NDArray[Any]
    forget_idx: npt.NDArray[Any]
    device: Any = "cpu"
    svc_gamma: str = "auto"


VISION = MetricRegistry("vision")
"""The vision family: inputs ``<set>.predict`` (predictions and probabilities; ``forget``, ``retain``,
``eval``) and ``finite`` (whether all outputs are finite), metrics UA, RA, TA and MIA."""


def _vctx(ev: Evaluation) -> VisionEvalContext:
    ctx: VisionEvalContext = ev.context
    return ctx


def _predict_input(part: str) -> Callable[[Evaluation], tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
    def provide(ev: Evaluation) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        c = _vctx(ev)
        return predict(c.model, getattr(c, f"x_{part}"), device=c.device)

    return provide


def _finite(ev: Evaluation) -> bool:
    ok = all(bool(np.isfinite(ev.input(f"{p}.predict")[1]).all()) for p in ("forget", "retain", "eval"))
    if not ok:  # a diverged model: no metric means anything; report NaN, never crash
        log.warning("evaluate: the model's outputs are not finite; every metric is NaN")
    return ok


for _part in ("forget", "retain", "eval"):
    VISION.add_input(f"{_part}.predict", _predict_input(_part))
VISION.add_input("finite", _finite)


def _accuracy_of(ev: Evaluation, part: str, keep: npt.NDArray[np.bool_] | None = None) -> float:
    if not ev.input("finite"):
        return float("nan")
    pred = ev.input(f"{part}.predict")[0]
    y = getattr(_vctx(ev), f"y_{part}").numpy()
    hit = pred == y
    return float(100.0 * np.mean(hit if keep is None else hit[keep]))


@VISION.metric("UA", needs=("forget.predict", "finite"))
def _ua(ev: Evaluation) -> Entry:
    """Unlearning accuracy: 100 − forget accuracy (%)."""
    c = _vctx(ev)
    correct = ev.input("forget.predict")[0] == c.y_forget.numpy()
    agg = float(100.0 * (1.0 - correct.mean())) if ev.input("finite") else float("nan")
    idx = c.forget_idx.tolist()
    return entry(agg, {str(i): {"forgotten": int(not k)} for i, k in zip(idx, correct.tolist(), strict=True)})


@VISION.metric("RA", needs=("retain.predict", "finite"))
def _ra(ev: Evaluation) -> Entry:
    """Retain accuracy (%)."""
    return entry(_accuracy_of(ev, "retain"))


@VISION.metric("TA", needs=("eval.predict", "finite"))
def _ta(ev: Evaluation) -> Entry:
    """Test (or validation) accuracy on the kept evaluation samples (%)."""
    return entry(_accuracy_of(ev, "eval", _vctx(ev).eval_keep))


def _true_conf(ev: Evaluation, part: str) -> npt.NDArray[np.float32]:
    y = getattr(_vctx(ev), f"y_{part}").numpy()
    probs = ev.input(f"{part}.predict")[1]
    out: npt.NDArray[np.float32] = probs[np.arange(y.size), y]
    return out


@VISION.metric("MIA", needs=("forget.predict", "retain.predict", "eval.predict", "finite"))
def _mia(ev: Evaluation) -> Entry:
    """MIA-efficacy (%): forget samples an SVC on true-class confidence calls non-members."""
    c = _vctx(ev)
    conf_f = _true_conf(ev, "forget")
    if ev.input("finite"):
        agg, pred = mia_efficacy(
            _true_conf(ev, "retain")[c.shadow], _true_conf(ev, "eval"), conf_f, svc_gamma=c.svc_gamma
        )
        conf: list[float] = conf_f.tolist()
    else:
        agg, pred = float("nan"), np.full(conf_f.size, -1, dtype=np.int64)
        conf = [float("nan")] * conf_f.size
    rows = {
        str(i): {"member_pred": int(p), "confidence": float(v)}
        for i, p, v in zip(c.forget_idx.tolist(), pred.tolist(), conf, strict=True)
    }
    return entry(agg, rows)


def evaluate_vision(
    ctx: VisionEvalContext, metrics: Sequence[str] = GAP_METRICS
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """``metrics`` (default UA, RA, TA, MIA, in %) of ``ctx.model``, plus their non-empty per-sample values.

    A model with non-finite outputs gets NaN metrics (MIA ``member_pred`` −1) instead of an error.

    Returns:
        ``(metrics, value_by_index)``; UA and MIA have per-forget-sample values keyed by training index.

    Raises:
        DataError: no evaluation sample left after removing the forgotten class.
    """
    check_choice("svc_gamma", ctx.svc_gamma, SVC_GAMMAS)
    ev = Evaluation(VISION, ctx)
    for p in ("forget", "retain", "eval"):
        ev.input(f"{p}.predict")
    if not ctx.eval_keep.any():
        raise DataError("evaluate: no evaluation samples left after removing the forgotten class")
    out = ev.run(metrics, strict=True)
    values = {k: float(e["agg_value"]) for k, e in out.items()}
    return values, {k: e["value_by_index"] for k, e in out.items() if e["value_by_index"]}
