"""The base install (numpy, scipy and the core dependencies; no extra): what needs only numpy runs, every
command that needs an extra says which one in one ``ofmu: error:`` line, no traceback.

Two levels:

- simulated (fast, always run): the command line in a subprocess whose optional dependencies are made
  unimportable by a meta-path finder (``_no_extras.py``), exactly as ``import torch`` fails where torch
  is not installed;
- real (``slow``): the package built as a wheel from a copy of the sources, installed with
  ``pip install --no-deps --no-index`` into a fresh virtual environment that sees only the base
  dependencies (linked from this environment, so no network is needed), then the commands are run there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from ofmu_opt.cli import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
NO_EXTRAS = Path(__file__).with_name("_no_extras.py")
ONE_ERROR = re.compile(r"\Aofmu: error: [^\n]+\n\Z")


def _sim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(NO_EXTRAS), *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_simulation_really_blocks_the_extras(tmp_path: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import _no_extras; _no_extras.install()\n"
        "import ofmu_opt, ofmu_opt.cli, ofmu_opt.reference, ofmu_opt.rates\n"
        "assert not any(m.partition('.')[0] in _no_extras.BLOCKED for m in sys.modules), 'an extra was imported'\n"
        "for name in ('torch', 'matplotlib', 'cvxpy', 'transformers', 'safetensors'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        assert exc.name == name\n"
        "    else:\n"
        "        raise AssertionError(name + ' imported')\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(NO_EXTRAS.parent)], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["unlearn", "--benchmark", "digits", "--method", "graddiff", "--quick", "--out", "{out}"], "torch"),
        (["bench", "--benchmark", "digits", "--methods", "graddiff", "--quick", "--out", "{out}"], "torch"),
        (["eval", "--model", "{out}/m", "--out", "{out}"], "torch"),
    ],
    ids=["unlearn", "bench", "eval"],
)
def test_commands_that_need_an_extra_name_it(tmp_path: Path, args: list[str], extra: str) -> None:
    p = _sim(*[a.format(out=tmp_path / "out") for a in args], cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert ONE_ERROR.match(p.stderr), p.stderr
    assert f"pip install 'ofmu_opt[{extra}]'" in p.stderr and f"ofmu {args[0]}:" in p.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_numpy_only_commands_run(tmp_path: Path) -> None:
    assert _sim("--help", cwd=tmp_path).returncode == 0
    refs = _sim("references", cwd=tmp_path)
    assert refs.returncode == 0 and "P3" in refs.stdout and refs.stderr == ""
    solve = _sim("solve", "P3", "--solver", "gpbgd", "--json", cwd=tmp_path)
    assert solve.returncode == 0, solve.stderr
    rec = json.loads(solve.stdout)
    assert rec["success"] and rec["distance"] <= 1e-4
    rates = _sim("rates", "inner_contraction", "--quick", "--json", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert rates.returncode == 0, rates.stderr
    rows = json.loads(rates.stdout)
    assert rows and all(r["experiment"] == "inner_contraction" and r["verdict"] == "holds" for r in rows)
    assert "plots skipped" in rates.stderr and "pip install 'ofmu_opt[plot]'" in rates.stderr
    assert (tmp_path / "r" / "inner_contraction.json").is_file()
    assert not list((tmp_path / "r").glob("*.png"))
    table = _sim("rates", "inner_contraction", "--quick", "--out", str(tmp_path / "t"), cwd=tmp_path)
    assert table.returncode == 0 and "plot (none)" in table.stdout


def test_demo_on_a_base_install_says_what_it_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's orchestration (in process, its heavy parts replaced): the torch benchmark is skipped
    naming the extra, the rates step runs."""
    from ofmu_opt.cli import cmd_demo, main

    ran: list[Any] = []
    monkeypatch.setattr(cmd_demo, "reference_table", lambda tol=1e-4: [])
    monkeypatch.setattr(cmd_demo, "_importable", lambda module: module not in EXTRAS)
    import ofmu_opt.rates as rates

    monkeypatch.setattr(rates, "run_experiments", lambda names, **kw: ran.append((names, kw)) or [])
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "== 2. Convergence rates (quick)\n" in out and len(ran) == 1
    assert re.search(r"== 3\. Digits unlearning benchmark \(quick\): skipped \(this needs torch.*ofmu_opt\[torch\]",
                     out)
    assert (tmp_path / "demo" / "reference_table.json").is_file()


# ----------------------------------------------------------------------------------- a real venv


def _closure(names: list[str]) -> list[metadata.Distribution]:
    """Installed distributions of ``names`` and of everything they require (extras excluded)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.split(r"[\s<>=!~;\[(]", todo.pop().strip(), maxsplit=1)[0]
        key = name.lower().replace("_", "-")
        if not key or key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        todo += [r for r in (dist.requires or []) if "extra ==" not in r]
    return list(seen.values())


def _link_base_dependencies(target: Path) -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    target.mkdir()
    for dist in _closure(deps):
        site = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if (site / top).exists() and not (target / top).exists():
                (target / top).symlink_to(site / top)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # hang guard only
def test_a_fresh_virtualenv_without_extras(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "ofmu_opt", src / "ofmu_opt", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    run = dict(capture_output=True, text=True, cwd=tmp_path)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(wheels), str(src)], **run)  # type: ignore[call-overload]
    assert build.returncode == 0, build.stderr[-3000:]
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **run)  # type: ignore[call-overload]
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               **run).stdout.strip())  # type: ignore[call-overload]
    _link_base_dependencies(tmp_path / "base")
    (site / "_ofmu_base_deps.pth").write_text(str(tmp_path / "base") + "\n")
    wheel = next(wheels.glob("ofmu_opt-*.whl"))
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], **run)  # type: ignore[call-overload]
    assert inst.returncode == 0, inst.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    ofmu = str(venv / "bin" / "ofmu")

    def sh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, cwd=tmp_path, env=env)

    probe = sh(str(py), "-c", "import importlib.util as u, ofmu_opt, sys; print(ofmu_opt.__file__); "
               "print([m for m in ('torch', 'matplotlib', 'cvxpy', 'transformers') if u.find_spec(m)])")
    assert probe.returncode == 0, probe.stderr
    where, found = probe.stdout.splitlines()
    assert str(venv) in where and found == "[]"  # the installed copy, and no extra is reachable
    assert sh(ofmu, "--help").returncode == 0
    refs = sh(ofmu, "references")
    assert refs.returncode == 0 and "P3" in refs.stdout, refs.stderr
    solve = sh(ofmu, "solve", "P3", "--solver", "gpbgd", "--json")
    assert solve.returncode == 0 and json.loads(solve.stdout)["success"], solve.stderr
    rates = sh(ofmu, "rates", "--quick", "--json", "--out", str(tmp_path / "rates"))
    assert rates.returncode == 0, rates.stderr
    assert {r["experiment"] for r in json.loads(rates.stdout)} >= {"penalty_bias", "inner_contraction"}
    assert "plots skipped" in rates.stderr and "Traceback" not in rates.stderr
    for args in (["unlearn", "--benchmark", "digits", "--method", "graddiff", "--out", str(tmp_path / "u")],
                 ["bench", "--benchmark", "digits", "--methods", "graddiff", "--out", str(tmp_path / "b")]):
        p = sh(ofmu, *args)
        assert p.returncode == 2 and ONE_ERROR.match(p.stderr), p.stderr
        assert "pip install 'ofmu_opt[torch]'" in p.stderr


def test_solve_with_the_torch_backend_names_the_extra(tmp_path: Path) -> None:
    p = _sim("solve", "P3", "--backend", "torch", cwd=tmp_path)
    assert p.returncode == 2 and ONE_ERROR.match(p.stderr), p.stderr
    assert "pip install 'ofmu_opt[torch]'" in p.stderr
