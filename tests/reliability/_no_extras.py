"""Run the ``ofmu`` command line as on a base install (numpy, scipy and the core dependencies only).

Usage: ``python _no_extras.py ARG ...``. Every optional dependency (the extras of pyproject.toml and what
they pull in) is made unimportable by a meta-path finder installed before ``ofmu_opt`` is imported, so
``import torch`` raises ``ModuleNotFoundError`` exactly as it would where torch is not installed.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

BLOCKED = frozenset({
    "torch", "torchvision", "safetensors", "sklearn", "matplotlib", "tqdm", "cvxpy", "sympy", "transformers",
    "tokenizers", "faker", "rouge_score", "peft", "accelerate", "datasets", "huggingface_hub", "PIL",
})


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def install() -> None:
    for name in list(sys.modules):
        if name.partition(".")[0] in BLOCKED:
            raise RuntimeError(f"{name} is already imported; install the blocker first")
    sys.meta_path.insert(0, _Blocker())


if __name__ == "__main__":
    install()
    from ofmu_opt.cli import main

    raise SystemExit(main(sys.argv[1:]))
