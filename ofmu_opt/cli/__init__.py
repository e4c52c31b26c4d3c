"""The ``ofmu`` command line.

Subcommands live in modules named ``ofmu_opt.cli.cmd_*``; each defines ``register(subparsers)`` which
adds its parser and sets ``handler``. Errors raised on purpose (:class:`~ofmu_opt.errors.OfmuError`)
become a one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import OfmuError

__all__ = ["build_parser", "main"]

log = logging.getLogger("ofmu_opt")


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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        code = args.handler(args)
    except OfmuError as exc:
        msg = " ".join(str(exc).split())
        sys.stderr.write(f"ofmu: error: {msg}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("ofmu: interrupted\n")
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
