"""Unlearning methods: the contract (:mod:`~ofmu_opt.unlearning.methods.base`), the baselines
(:mod:`~ofmu_opt.unlearning.methods.ascent`, :mod:`~ofmu_opt.unlearning.methods.finetune`,
:mod:`~ofmu_opt.unlearning.methods.projection`, :mod:`~ofmu_opt.unlearning.methods.representation`), OFMU
(:mod:`~ofmu_opt.unlearning.methods.ofmu`) and the name registry (:mod:`~ofmu_opt.unlearning.methods.registry`).
"""
