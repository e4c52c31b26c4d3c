"""Unlearning metrics on one registry (:mod:`~ofmu_opt.unlearning.metrics.registry`): an evaluation is a
list of metric names; each metric declares the shared inputs it needs.

Families: TOFU (:mod:`~ofmu_opt.unlearning.metrics.tofu` definitions, :mod:`~ofmu_opt.unlearning.metrics.tofu_eval`
registry), vision UA/RA/TA/MIA (:mod:`~ofmu_opt.unlearning.metrics.vision`) and multiple-choice accuracy
(:mod:`~ofmu_opt.unlearning.metrics.mcq`).
"""
