"""``ofmu unlearn``: run one unlearning method on one benchmark and write its evaluation.

Also defines :func:`add_unlearning_options`, the option set shared by ``unlearn``, ``bench`` and
``eval``, and :func:`run_command`, which turns the parsed arguments into a typed
:class:`~ofmu_opt.unlearning.runner.RunConfig` and calls the runner (which rejects every option the
chosen benchmark does not read). Nothing else happens here.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

__all__ = ["add_unlearning_options", "command_registrar", "register", "run_command"]


def add_unlearning_options(p: argparse.ArgumentParser) -> None:
    """Add the options shared by the unlearning subcommands to ``p``."""
    from ..unlearning.benchmarks import list_benchmarks

    p.add_argument("--benchmark", default="digits", help=f"one of {', '.join(list_benchmarks())} (default digits)")
    p.add_argument("--scenario", default=None, help="vision: random10 (10%% random samples) or class:K")
    p.add_argument("--split", default=None, help="language models: forget01 | forget05 | forget10")
    p.add_argument("--method", default=None, help="one method (see --methods all for the list)")
    p.add_argument("--methods", default="all", help="bench: 'all' or a comma-separated list of methods")
    p.add_argument("--config", default=None, metavar="FILE", help="TOML file: [experiment], [method], [methods.NAME]")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--seeds", type=int, default=3, help="bench: number of seeds (default 3)")
    p.add_argument("--budget", type=int, default=None, help="bench: candidates per method")
    p.add_argument("--quick", action="store_true", help="small models and few steps (CPU, minutes)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory")
    p.add_argument(
        "--resume", action="store_true", help="reuse finished runs found in --out; continue from a mid-run checkpoint"
    )
    p.add_argument(
        "--checkpoint-every",
        dest="checkpoint_every",
        type=int,
        default=10,
        metavar="N",
        help="unlearn: write a resumable checkpoint to --out every N steps (0 = never; default 10)",
    )
    p.add_argument("--model", default=None, metavar="DIR", help="model directory (eval; real-data LM benchmarks)")
    p.add_argument("--data", default=None, metavar="PATH", help="local data (CIFAR-10 directory, TOFU files)")
    p.add_argument(
        "--retain-logs",
        dest="retain_logs",
        default=None,
        metavar="FILE",
        help="evaluation of the retain/Retrain model to compare against",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="default cpu")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a method option (METHOD.NAME=VALUE for one method, experiment.NAME=VALUE)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for small models)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run_command(args: argparse.Namespace, command: str) -> int:
    """Build the :class:`RunConfig` of ``ofmu <command>`` from ``args``, run it, print its report."""
    import sys

    from .._config import config_from_dict
    from .._progress import configure
    from ..unlearning.runner import RunConfig, run

    configure(quiet=bool(args.quiet))
    fields = ("benchmark", "scenario", "split", "method", "methods", "config", "seed", "seeds", "budget", "quick",
              "out", "resume", "checkpoint_every", "model", "data", "retain_logs", "device", "threads", "quiet")
    data = {k: getattr(args, k) for k in fields}
    cfg = config_from_dict(RunConfig, {"command": command, "options": tuple(args.option), **data}, prefix="--")
    outcome = run(cfg)
    sys.stdout.write(outcome.message.rstrip("\n") + "\n")
    return outcome.code


def command_registrar(command: str, help: str, description: str) -> Callable[[Any], None]:
    """A ``register(subparsers)`` that adds ``ofmu <command>`` with the shared options, handled by the runner."""

    def register(subparsers: Any) -> None:
        p = subparsers.add_parser(command, help=help, description=description)
        add_unlearning_options(p)
        p.set_defaults(handler=functools.partial(run_command, command=command))

    register.__doc__ = f"Add ``ofmu {command}``."
    return register


register = command_registrar(
    "unlearn",
    help="unlearn a forget set with one method and evaluate",
    description="Unlearn with one method; writes <BENCH>_EVAL.json, _SUMMARY.json and a checkpoint.",
)
