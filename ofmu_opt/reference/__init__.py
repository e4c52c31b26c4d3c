"""Reference bi-level problems with known solutions (closed form; cvxpy cross-checks in
:mod:`ofmu_opt.reference.cvxpy_refs`)."""

from .problems import REFERENCES, ReferenceProblem, get_reference, list_references, make_p3

__all__ = ["REFERENCES", "ReferenceProblem", "get_reference", "list_references", "make_p3"]
