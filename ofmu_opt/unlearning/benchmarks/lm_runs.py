"""Unlearning runs on causal language models, shared by the TOFU-style and WMDP-style benchmarks.

:class:`LMStream` is an infinite, seeded, resumable stream of mini-batches; :func:`run_on_streams`
runs a method on a model with a frozen copy as the reference (optionally through LoRA adapters),
counting gradient evaluations and passing the runner's snapshot / resume hooks, so an LM run resumes
exactly after a kill, like a vision run.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ...errors import ConfigError, DataError
from ..lm_adapter import CausalLMAdapter
from ..methods.base import MethodResult, StepRecord, UnlearnContext
from ..models.hf import EncodedQA, LMBatch, apply_lora, collate_qa, save_causal_lm
from .base import RunHooks, count_gradient_evaluations

__all__ = ["LMStream", "model_dir_arg", "run_on_streams", "save_lm"]


class LMStream:
    """Infinite, seeded stream of shuffled LM mini-batches (items attached for relabelling); resumable."""

    def __init__(
        self, enc: Sequence[EncodedQA], items: Sequence[Any], pad: int, bs: int, seed: int, device: torch.device
    ) -> None:
        if not enc:
            raise DataError("stream: expected at least one example, received none")
        self.enc, self.items, self.pad, self.bs, self.device = list(enc), list(items), pad, bs, device
        self.gen = torch.Generator().manual_seed(seed)
        self._order: list[int] = []

    def __iter__(self) -> Iterator[LMBatch]:
        return self

    def __next__(self) -> LMBatch:
        if len(self._order) < self.bs:
            self._order += torch.randperm(len(self.enc), generator=self.gen).tolist()
        idx, self._order = self._order[: self.bs], self._order[self.bs :]
        b = collate_qa([self.enc[i] for i in idx], self.pad, idx, [self.items[i] for i in idx])
        return b.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """The stream's position (generator state and the pending order), for exact resume."""
        return {"generator": self.gen.get_state(), "order": torch.tensor(self._order, dtype=torch.long)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a position saved by :meth:`state_dict`."""
        order = [int(i) for i in torch.as_tensor(state["order"], dtype=torch.long).cpu().tolist()]
        if any(not 0 <= i < len(self.enc) for i in order):
            raise DataError(f"stream: the saved position does not fit a stream of {len(self.enc)} examples")
        self.gen.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).cpu())
        self._order = order


def run_on_streams(
    method: Any,
    model: Any,
    adapter: CausalLMAdapter,
    streams: tuple[Iterator[LMBatch], Iterator[LMBatch]],
    seed: int,
    device: torch.device,
    lora_r: int = 0,
    diagnostics_every: int = 0,
    hooks: RunHooks | None = None,
) -> tuple[MethodResult, Any]:
    """Run ``method`` on ``model`` (a frozen copy is the reference) with forget/retain batch streams.

    With ``lora_r > 0`` the model is wrapped in LoRA adapters first (only they train). ``hooks``
    carries the progress tick and the mid-run snapshot / resume of the runner.
    """
    hooks = hooks or RunHooks()
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    if lora_r > 0:
        model = apply_lora(model, r=lora_r, alpha=2 * lora_r)
    model.train()
    records: list[StepRecord] = []
    ctx = UnlearnContext(
        model=model,
        reference=reference,
        adapter=adapter,
        forget=streams[0],
        retain=streams[1],
        seed=seed,
        device=device,
        diagnostics=records.append if diagnostics_every else None,
        diagnostics_every=diagnostics_every,
        progress=hooks.progress,
        snapshot=hooks.snapshot,
        checkpoint_every=hooks.checkpoint_every if hooks.snapshot else 0,
        resume=hooks.resume,
    )
    with count_gradient_evaluations(model) as n_grad:
        res: MethodResult = method.run(ctx)
    res.info.setdefault("grad_evals", n_grad[0])
    res.model.eval()
    return res, res.model


def save_lm(model: Any, tok: Any, directory: Path, lora_r: int) -> None:
    """Save an unlearned LM (LoRA adapters merged) as a Hugging Face model directory."""
    to_save = model.merge_and_unload() if lora_r > 0 and hasattr(model, "merge_and_unload") else model
    save_causal_lm(to_save, tok, directory)


def model_dir_arg(path: Path | str | None) -> Path:
    """A ``--model`` directory; an ``ofmu unlearn`` output directory resolves to its ``model/``."""
    if not path:
        raise ConfigError("--model: expected a model directory, received none")
    mdir = Path(path)
    if (mdir / "model" / "config.json").is_file():
        mdir = mdir / "model"
    return mdir
