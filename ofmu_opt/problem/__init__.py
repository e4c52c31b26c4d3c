"""Problem layer: oracle protocols, the bi-level problem, call counting and finite-difference checks."""

from .bilevel import BilevelProblem, with_counter
from .checks import FDReport, check_gradient, check_hvp
from .constraints import ConvexSet, InequalityConstraints, constraint_values, feasibility
from .oracles import CallCounter, CountingObjective, FunctionObjective, Objective, has_hvp, has_tvp
from .space import VectorSpace

__all__ = [
    "BilevelProblem",
    "CallCounter",
    "ConvexSet",
    "CountingObjective",
    "FDReport",
    "FunctionObjective",
    "InequalityConstraints",
    "Objective",
    "VectorSpace",
    "check_gradient",
    "check_hvp",
    "constraint_values",
    "feasibility",
    "has_hvp",
    "has_tvp",
    "with_counter",
]
