"""Step-cost benchmark of the torch backend: OFMU inner/outer steps against GA and GradDiff steps.

For one model and one pair of batches, times (median of ``--repeats``) and, on CUDA, peak memory of

- GA step: ∇L_f (one forward + backward);
- GradDiff step: ∇(−L_f + L_r);
- OFMU inner step: ∇φ with the cosine term (exact gradient);
- OFMU outer step: ∇F = ∇L_r + 2ρ ∇²φ ∇φ for each HVP mode (exact by double backward and by
  forward-over-reverse, finite differences, forget Hessian);
- a plain HVP of L_f by each autodiff mode.

Writes JSON (machine, versions, settings, results, ratios to GA and GradDiff) to ``--out`` (default
``$OUT/gpu_timing.json`` when ``$OUT`` is set, else ``benchmarks/results/gpu_timing.json``).

Usage::

    python benchmarks/gpu_timing.py --device cuda --width 512 --batch 256
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ofmu_opt._io import atomic_write_json
from ofmu_opt.backends.torch_module import ModuleBatch, module_problem
from ofmu_opt.core.inner import InnerSpec

log = logging.getLogger("gpu_timing")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(fn: Callable[[], Any], device: torch.device, repeats: int) -> dict[str, float]:
    fn()  # warm-up
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    out = {"median_s": statistics.median(times), "min_s": min(times)}
    if device.type == "cuda":
        out["peak_mem_bytes"] = float(torch.cuda.max_memory_allocated(device) - base)
    return out


def _bench_mode(
    model: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor], batch: ModuleBatch, autodiff: str,
    device: torch.device, repeats: int,
) -> dict[str, Any]:
    mp = module_problem(model, loss, None, None, autodiff=autodiff, default_batch=batch)
    p, y = mp.problem, mp.y0
    sp = p.space
    v = tuple(torch.randn_like(t) for t in y)
    res: dict[str, Any] = {}
    res[f"ga[{autodiff}]"] = _measure(lambda: p.inner.grad(None, y, batch=batch), device, repeats)

    def graddiff() -> Any:
        return sp.sub(p.outer.grad(None, y, batch=batch)[1], p.inner.grad(None, y, batch=batch)[1])

    res[f"graddiff[{autodiff}]"] = _measure(graddiff, device, repeats)
    res[f"hvp_Lf[{autodiff}]"] = _measure(lambda: p.inner.hvp(None, y, v, batch=batch), device, repeats)
    for mode in ("exact", "finite_difference", "forget_hessian"):
        phi = p.inner_factory(InnerSpec("signed", 0.1, 1e-8, mode, 1e-3, -1.0))
        if mode == "exact":

            def inner_step(phi: Any = phi) -> Any:
                return phi.grad(None, y, batch=batch)

            res[f"ofmu_inner[{autodiff}]"] = _measure(inner_step, device, repeats)

        def outer(phi: Any = phi) -> Any:
            _, gphi = phi.grad(None, y, batch=batch)
            hv = phi.hvp(None, y, gphi, batch=batch)[1]
            return sp.axpy(2.0, hv, p.outer.grad(None, y, batch=batch)[1])

        res[f"ofmu_outer_{mode}[{autodiff}]"] = _measure(outer, device, repeats)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    layers: list[nn.Module] = [nn.Linear(64, args.width), nn.Tanh()]
    for _ in range(args.depth - 1):
        layers += [nn.Linear(args.width, args.width), nn.Tanh()]
    layers.append(nn.Linear(args.width, 10))
    model = nn.Sequential(*layers).to(device, dtype)
    g = torch.Generator().manual_seed(args.seed)

    def data() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(args.batch, 64, generator=g).to(device, dtype)
        return x, torch.randint(0, 10, (args.batch,), generator=g).to(device)

    def ce(m: nn.Module, b: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(m(b[0]).float(), b[1])

    batch = ModuleBatch(data(), data())
    results: dict[str, Any] = {}
    for autodiff in ("double_backward", "forward_over_reverse"):
        results.update(_bench_mode(model, ce, batch, autodiff, device, args.repeats))
    ratios = {}
    for key, val in results.items():
        ad = key[key.index("[") + 1:-1]
        ratios[key] = {
            "vs_ga": val["median_s"] / results[f"ga[{ad}]"]["median_s"],
            "vs_graddiff": val["median_s"] / results[f"graddiff[{ad}]"]["median_s"],
        }
        if "peak_mem_bytes" in val and results[f"graddiff[{ad}]"].get("peak_mem_bytes"):
            ratios[key]["mem_vs_graddiff"] = val["peak_mem_bytes"] / results[f"graddiff[{ad}]"]["peak_mem_bytes"]
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__},
        "settings": vars(args),
        "params": sum(t.numel() for t in model.parameters()),
        "results": results,
        "ratios": ratios,
    }
    out = args.out or (str(Path(os.environ["OUT"]) / "gpu_timing.json") if os.environ.get("OUT")
                       else "benchmarks/results/gpu_timing.json")
    atomic_write_json(out, report)
    for key in results:
        log.info("%-42s %9.3f ms  %5.2fx GA  %5.2fx GradDiff", key, 1e3 * results[key]["median_s"],
                 ratios[key]["vs_ga"], ratios[key]["vs_graddiff"])
    log.info("wrote %s", out)
    return report


if __name__ == "__main__":
    main()
