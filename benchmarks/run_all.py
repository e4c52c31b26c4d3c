"""`make bench`: run every benchmark that is installed and write JSON + markdown under --out."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHMARKS = [
    ("bench_generic", []),
    ("bench_step_cost", []),
    ("bench_end_to_end", []),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="bench_out")
    a = p.parse_args(argv)
    failures = 0
    for name, extra in BENCHMARKS:
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            print(f"== {name}: skipped ({exc})", file=sys.stderr)
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        code = mod.main(["--out", a.out, *extra])
        print(f"== {name}: exit {code} in {time.perf_counter() - t0:.0f} s", flush=True)
        failures += int(code != 0)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
