"""Backend-agnostic solver core: state, result, schedules, step rules, similarity, inner objective, solver."""

from .callbacks import HistoryRecorder
from .comparison import Bome, F2sa, ImplicitDiff
from .continuation import Continuation
from .inner import ComposedInner, InnerObjective, InnerSpec, make_inner
from .loop import run_solver
from .multistart import MultiStart
from .result import MESSAGES, BilevelResult, IntermediateResult, Status
from .schedules import next_penalty
from .similarity import similarity_and_grad, similarity_jvp
from .solver import (
    PenaltySolver,
    PenaltyState,
    RoundBatches,
    dtype_eps,
    gpbgd,
    ofmu,
    scalarized,
    vpbgd,
    with_continuation,
)
from .steps import get_step_rule

__all__ = [
    "Bome",
    "Continuation",
    "F2sa",
    "ImplicitDiff",
    "MultiStart",
    "run_solver",
    "MESSAGES",
    "BilevelResult",
    "ComposedInner",
    "HistoryRecorder",
    "InnerObjective",
    "InnerSpec",
    "IntermediateResult",
    "PenaltySolver",
    "PenaltyState",
    "RoundBatches",
    "Status",
    "get_step_rule",
    "gpbgd",
    "make_inner",
    "next_penalty",
    "ofmu",
    "scalarized",
    "similarity_and_grad",
    "similarity_jvp",
    "dtype_eps",
    "vpbgd",
    "with_continuation",
]
