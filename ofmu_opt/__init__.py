"""ofmu_opt: penalty-based bi-level optimization and OFMU machine unlearning."""

__version__ = "0.1.0"
