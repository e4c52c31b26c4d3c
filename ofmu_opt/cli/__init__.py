"""The ``ofmu`` command line.

Subcommands live in modules named ``ofmu_opt.cli.cmd_*``; each defines ``register(subparsers)`` which
adds its parser and sets ``handler``. Errors raised on purpose (:class:`~ofmu_opt.errors.OfmuError`)
become a one-line message on stderr and exit code 2, never a traceback. So do the errors a user causes
outside the package's checks: a missing optional dependency (the message names the extra to install),
an operating-system error on a path the user gave (permission, name too long, disk full), and running
out of memory. A closed stdout (``ofmu ... | head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence

from ..errors import OfmuError

__all__ = ["EXTRAS", "bounded_int", "build_parser", "main", "missing_extra"]

log = logging.getLogger("ofmu_opt")

EXTRAS: dict[str, str] = {
    "torch": "torch", "torchvision": "torch", "safetensors": "torch", "sklearn": "torch", "tqdm": "torch",
    "matplotlib": "plot", "cvxpy": "cvxpy", "sympy": "cvxpy", "transformers": "llm", "tokenizers": "llm",
    "faker": "llm", "rouge_score": "llm", "peft": "llm",
}
"""Top-level module of each optional dependency -> the extra of ``pyproject.toml`` that installs it."""


def missing_extra(exc: BaseException) -> str | None:
    """If ``exc`` is the ``ModuleNotFoundError`` of an optional dependency, the one-line explanation
    naming the extra to install; else ``None`` (a missing module of the package itself is a bug).

    Examples:
        >>> missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch"))
        "this needs torch, which is not installed; install the extra: pip install 'ofmu_opt[torch]'"
        >>> missing_extra(ModuleNotFoundError("No module named 'ofmu_opt.x'", name="ofmu_opt.x")) is None
        True
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return f"this needs {top}, which is not installed; install the extra: pip install 'ofmu_opt[{extra}]'"


def bounded_int(option: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type=`` for an integer option within ``[low, high]``: non-integers, integers beyond
    64 bits and out-of-range values give ``ofmu: error: argument OPTION: ...`` and exit 2.

    Examples:
        >>> bounded_int("--seed", 0, 2**32 - 1)("7")
        7
    """

    def parse(text: str) -> int:
        t = text.strip()
        if len(t) > 40:  # also keeps int() away from its digit limit
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, received {t[:20]!r}...")
        try:
            value = int(t, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, received {t!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, received {value}")
        return value

    parse.__name__ = f"integer in {low}..{high}"
    return parse


def _fail(message: str) -> int:
    sys.stderr.write(f"ofmu: error: {' '.join(message.split())}\n")
    return 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"ofmu: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``ofmu`` argument parser with every registered subcommand."""
    parser = _Parser(prog="ofmu", description="Penalty-based bi-level optimization and OFMU unlearning.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("cmd_"))
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (0 ok, 1 not converged, 2 bad input)."""
    from .. import _progress

    saved = _progress.get_settings()  # -q is per call: an in-process call must not silence later ones
    saved_level = _progress.log.level
    try:
        return _main(argv)
    except OfmuError as exc:
        return _fail(str(exc))
    except ModuleNotFoundError as exc:
        hint = missing_extra(exc)
        if hint is None:
            raise  # a module of the package itself is missing: a bug, keep the traceback
        return _fail(f"{_command(argv)}{hint}")
    except KeyboardInterrupt:
        sys.stderr.write("ofmu: interrupted\n")
        return 130
    except BrokenPipeError:  # stdout closed by the reader (``ofmu references | head``)
        try:  # point stdout at /dev/null so the interpreter's final flush does not fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except MemoryError:
        return _fail("out of memory; reduce the problem or model size")
    except RecursionError:
        return _fail("input nested too deeply (recursion limit reached)")
    except OSError as exc:  # a path the user gave: permission, name too long, disk full, read-only ...
        where = f" {exc.filename!r}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{':' if where else ''}{where}")
    finally:
        _progress.configure(**dataclasses.asdict(saved))
        _progress.log.setLevel(saved_level)


def _command(argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    name = next((a for a in args if not a.startswith("-")), "")
    return f"ofmu {name}: " if name else ""


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(name)s: %(message)s"
    )
    # progress lines (stderr not a terminal: a batch job, a pipe, a log file) show without -v; -q turns the
    # phases off altogether (ofmu_opt._progress)
    from .._progress import log as progress_log

    progress_log.setLevel(min(logging.INFO, logging.getLogger().level))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    code = args.handler(args)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
