"""Problem layer: oracle protocols, the bi-level problem, call counting and finite-difference checks."""

from .bilevel import BilevelProblem, with_counter
from .checks import FDReport, check_gradient, check_hvp
from .oracles import CallCounter, CountingObjective, FunctionObjective, Objective, has_hvp, has_tvp
from .space import VectorSpace

__all__ = [
    "BilevelProblem",
    "CallCounter",
    "CountingObjective",
    "FDReport",
    "FunctionObjective",
    "Objective",
    "VectorSpace",
    "check_gradient",
    "check_hvp",
    "has_hvp",
    "has_tvp",
    "with_counter",
]
