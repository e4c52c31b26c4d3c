"""Unlearn a causal LM: TinyTOFU with a tiny GPT-2, NPO vs OFMU, TOFU metrics in open-unlearning's schema.

Everything is offline: TinyTOFU (fictitious authors, generated from a seed with Faker) stands in for TOFU,
a tokenizer is trained locally, and a small `GPT2LMHeadModel` is trained from scratch on all authors
("target") and on the retain authors only ("retain", the gold standard that forget quality compares
with); both are cached by a hash of their recipe. Each method then unlearns the forget05 authors and is
evaluated with the TOFU-family metrics (forget quality = KS-test p-value of truth ratios against the retain
model, model utility = harmonic mean of 9 numbers). Finally the evaluation runs again through the
real-TOFU path: the split is written in TOFU's public file schema and read back with `ofmu eval`.

The same commands accept real TOFU files (`--data DIR`) and any local Hugging Face causal LM
(`--model DIR`); see docs/howto_unlearn_causal_lm.md.

Run:  python examples/04_unlearn_a_causal_lm.py [--smoke]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ofmu_opt.cli import main as ofmu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="smaller data and training (CPU, about a minute)")
    p.add_argument("--out", default="lm_out")
    a = p.parse_args(argv)
    out = Path(a.out)
    size = (["--option", "experiment.n_authors=20", "--option", "experiment.train_epochs=12",
             "--option", "experiment.unlearn_steps=10"] if a.smoke else [])
    common = ["--benchmark", "tinytofu", "--split", "forget05", "--quick", "-q",
              "--option", f"experiment.cache_dir={out / 'cache'}", *size]
    rows = {}
    for method in ("npo", "ofmu"):
        code = ofmu(["unlearn", *common, "--method", method, "--out", str(out / method)])
        if code != 0:
            return code
        rows[method] = json.loads((out / method / "TOFU_SUMMARY.json").read_text(encoding="utf-8"))
    print(f"\n{'method':8s} {'forget_quality':>15s} {'model_utility':>14s}")
    for method, s in rows.items():
        fq = s.get("forget_quality")
        fq_text = "n/a" if fq is None else f"{fq:.3g}"
        print(f"{method:8s} {fq_text:>15s} {s['model_utility']:14.3f}")
    # the real-file path: write the split in TOFU's schema and evaluate the NPO model from those files
    from ofmu_opt.unlearning.data.tinytofu import TinyTofuConfig, generate_tinytofu

    generate_tinytofu(TinyTofuConfig(n_authors=20 if a.smoke else 40)).write_tofu_files(out / "tofu_files", "forget05")
    return ofmu(["eval", "--benchmark", "tofu", "--split", "forget05", "-q", "--model", str(out / "npo"),
                 "--data", str(out / "tofu_files"), "--out", str(out / "eval_from_files"), *size,
                 "--option", f"experiment.cache_dir={out / 'cache'}"])


if __name__ == "__main__":
    raise SystemExit(main())
