"""OFMU's cost options (issue 15: fd_step, fd_scheme, first_order, cosine_fd_step) reach the solver and the
torch oracles from the method's config, i.e. from ``--option ofmu.NAME=VALUE``."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.experiment import VisionExperimentConfig, load_data, run_method, train_classifier
from ofmu_opt.unlearning.methods import ofmu as ofmu_mod
from ofmu_opt.unlearning.methods.registry import make_method
from ofmu_opt.unlearning.models.vision import build_model


def test_cost_options_parse_and_validate() -> None:
    m = make_method("ofmu", {"hvp": "finite_difference", "first_order": "true", "fd_scheme": "forward",
                             "fd_step": "1e-4", "cosine_fd_step": "1e-3"})
    c = m.config
    assert (c.first_order, c.fd_scheme, c.fd_step, c.cosine_fd_step) == (True, "forward", 1e-4, 1e-3)
    assert c.solver().fd_step == 1e-4
    for bad, match in [({"first_order": "true"}, "first_order"),  # hvp exact
                       ({"hvp": "finite_difference", "first_order": "true", "accumulation": "2"}, "first_order"),
                       ({"fd_scheme": "backward"}, "fd_scheme"), ({"fd_step": "0"}, "fd_step"),
                       ({"cosine_fd_step": "-1"}, "cosine_fd_step")]:
        with pytest.raises(ConfigError, match=match):
            make_method("ofmu", bad)


def test_cost_options_reach_module_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = ofmu_mod.module_problem

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ofmu_mod, "module_problem", spy)
    cfg = VisionExperimentConfig(hidden=8, train_steps=40, batch_size=8, diagnostics_every=0)
    data = load_data(cfg)
    model = build_model("mlp", (64,), 10, seed=0, hidden=8)
    x, y = torch.cat([data.x_forget, data.x_retain]), torch.cat([data.y_forget, data.y_retain])
    train_classifier(model, x, y, steps=40, lr=3e-3, batch_size=32, seed=0, device=torch.device("cpu"))
    method = make_method("ofmu", {"steps": 2, "inner_steps": 1, "hvp": "finite_difference", "first_order": True,
                                  "fd_scheme": "forward", "cosine_fd_step": 1e-3})
    res = run_method(method, copy.deepcopy(model), data, cfg, torch.device("cpu"), seed=0)
    assert (seen["first_order"], seen["fd_scheme"], seen["cosine_fd_step"]) == (True, "forward", 1e-3)
    assert len(res.history) == 2
