"""Shared helpers: machine/version record, JSON + markdown output."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from ofmu_opt._io import atomic_write_json, atomic_write_text


def machine_info() -> dict[str, Any]:
    import numpy
    import scipy

    info: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(), "numpy": numpy.__version__,
        "scipy": scipy.__version__, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return "" if v is None else str(v)

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |\n" for r in rows)


def write_outputs(out: Path, name: str, payload: dict[str, Any], table: str) -> None:
    atomic_write_json(out / f"{name}.json", payload)
    atomic_write_text(out / f"{name}.md", f"# {name}\n\nMachine: {payload['machine']}\n\n{table}")
