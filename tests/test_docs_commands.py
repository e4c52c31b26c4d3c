"""Every shell command of the first-hour pages runs as written (at smoke size), or is marked as an illustration.

The convention (documented in docs/index.md, "How the commands on these pages are checked"):

- a fenced ```` ```bash ```` block in README.md, docs/quickstart.md, docs/tutorial_*.md, docs/howto_*.md
  or docs/distributed.md is *runnable*: this test runs its commands, in page order, in a fresh directory
  per page (so a page creates every file its later commands read), and each must exit with code 0;
- a block whose first line is ``# illustration: <why>`` is shown but not run (it needs files, hardware
  or machines that a test cannot have); the reason is visible to the reader;
- ``make`` lines are checked with ``make -n`` (the target exists; ``make test`` is this suite itself);
- the ```` ```python ```` blocks of README.md and docs/quickstart.md are complete programs and run too;
- "smoke size": the arguments in :data:`SMOKE` are appended to a command (argparse keeps the last value
  of an option, so they only shrink model sizes, steps, seeds and experiment lists); nothing else
  of the command changes.

All commands of one page run in one Python process (the ``ofmu`` command line in-process, scripts
through ``runpy``), so the page pays one import of torch, not one per command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "docs" / "quickstart.md", ROOT / "docs" / "distributed.md"]
    + list((ROOT / "docs").glob("tutorial_*.md")) + list((ROOT / "docs").glob("howto_*.md"))
)
ILLUSTRATION = "# illustration:"
#: pages whose ```python blocks are complete programs and run too (tutorial pages show fragments of an
#: examples/ script, which tests/test_examples.py runs)
PYTHON_PAGES = {"README.md", "quickstart.md"}
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
COMMAND_WORDS = ("ofmu ", ".venv/bin/", "python ", "python3 ", "torchrun ", "make ", "pip ")

_DIGITS = ["--option", "experiment.train_steps=30", "--option", "experiment.hidden=32"]
_LM = ["--option", "experiment.n_authors=12", "--option", "experiment.n_retain_eval_authors=2",
       "--option", "experiment.n_utility=4", "--option", "experiment.train_epochs=2",
       "--option", "experiment.unlearn_steps=2", "--option", "experiment.max_new_tokens=4",
       "--option", "experiment.n_embd=16", "--option", "experiment.n_layer=1"]
_WMDP = ["--option", "experiment.n_entities=8", "--option", "experiment.train_epochs=2",
         "--option", "experiment.unlearn_steps=2", "--option", "experiment.n_embd=16",
         "--option", "experiment.n_layer=1"]
_BENCH = ["--seeds", "1", "--budget", "1"]
#: arguments appended to a command, by (subcommand, --benchmark); "*" matches any benchmark
SMOKE: dict[tuple[str, str], list[str]] = {
    ("unlearn", "digits"): ["-q", *_DIGITS, "--option", "steps=3"],
    ("eval", "digits"): ["-q", *_DIGITS],
    ("bench", "digits"): ["-q", *_DIGITS, "--option", "steps=3", *_BENCH],
    ("unlearn", "tinytofu"): ["-q", *_LM],
    ("eval", "tinytofu"): ["-q", *_LM],
    ("bench", "tinytofu"): ["-q", *_LM, *_BENCH],
    ("unlearn", "tinywmdp"): ["-q", *_WMDP],
    ("eval", "tinywmdp"): ["-q", *_WMDP],
    ("bench", "tinywmdp"): ["-q", *_WMDP, *_BENCH],
}
#: commands that take a list of experiments: an empty list (= all) becomes these at smoke size
SMOKE_DEFAULT_LIST = {"rates": ["penalty_bias"]}


def blocks(page: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block of a page, body dedented."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        indent = m.group("indent")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line
                         for line in m.group("body").splitlines())
        out.append((m.group("lang").lower(), body))
    return out


def _split_lines(body: str) -> list[str]:
    """Split a shell block into command lines: at newlines outside quotes, after joining ``\\`` continuations,
    with ``#`` comments (outside quotes, at the start of a word) removed."""
    lines, cur, quote, i = [], [], "", 0
    text = re.sub(r"\\\n", " ", body)
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < len(text):
                cur.append(c)
                i += 1
                c = text[i]
        elif c in "'\"":
            quote = c
        elif c == "#" and (not cur or cur[-1] in " \t"):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif c == "\n":
            lines.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if quote:
        raise ValueError(f"unclosed quote in a shell block: {body!r}")
    lines.append("".join(cur))
    return [line for line in lines if line.strip()]


def commands(body: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, split like a shell."""
    return [shlex.split(line) for line in _split_lines(body)]


def runnable(page: Path) -> list[list[str]]:
    """Commands of the page's runnable shell blocks (and, on the first-hour pages, Python blocks), in order."""
    out: list[list[str]] = []
    for lang, body in blocks(page):
        if body.lstrip().startswith(ILLUSTRATION):
            continue
        if lang in SHELL_LANGS:
            out.extend(commands(body))
        elif lang == "python" and page.name in PYTHON_PAGES:
            out.append(["python", "-c", body])
    return out


def smoke(argv: list[str]) -> list[str]:
    """The command with the smoke-size arguments appended."""
    args = argv[1:] if Path(argv[0]).name == "ofmu" else []
    if not args:
        return list(argv)
    sub = args[0]
    bench = args[args.index("--benchmark") + 1] if "--benchmark" in args else "digits"
    extra = list(SMOKE.get((sub, bench), SMOKE.get((sub, "*"), [])))
    if sub in SMOKE_DEFAULT_LIST and not [a for a in args[1:] if not a.startswith("-")]:
        extra += SMOKE_DEFAULT_LIST[sub]
    return [*argv, *extra]


DRIVER = r"""
import json, os, runpy, subprocess, sys, traceback
from pathlib import Path
root, cmds = sys.argv[1], json.loads(sys.stdin.read())
results = []
for argv in cmds:
    name = Path(argv[0]).name
    rc, err = 0, ""
    try:
        if name == "ofmu":
            from ofmu_opt.cli import main
            rc = main(argv[1:])
        elif name.startswith("python"):
            sys.argv = ["-c", *argv[3:]] if argv[1] == "-c" else argv[1:]
            try:
                if argv[1] == "-c":
                    exec(compile(argv[2], "<string>", "exec"), {"__name__": "__main__"})
                else:
                    runpy.run_path(argv[1], run_name="__main__")
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        elif name == "make":
            p = subprocess.run(["make", "-n", *argv[1:]], cwd=root, capture_output=True, text=True)
            rc, err = p.returncode, p.stderr[-1000:]
        elif name == "torchrun":
            p = subprocess.run([str(Path(sys.executable).parent / "torchrun"), *argv[1:]], capture_output=True,
                               text=True, timeout=3600)  # hang guard only
            rc, err = p.returncode, (p.stdout + p.stderr)[-2000:]
        else:
            rc, err = 127, f"not a command this check can run: {argv[0]} (mark the block '# illustration: ...')"
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        rc, err = 1, traceback.format_exc()[-3000:]
    results.append({"argv": argv, "rc": rc, "err": err})
    if rc != 0:
        break
print("\n@@RESULTS@@" + json.dumps(results))
"""


def _workdir(tmp_path: Path) -> Path:
    """A fresh directory where `.venv/bin/...` and `examples/...` resolve as in the repository root."""
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    for name in ("examples", "pyproject.toml", "Makefile"):
        (work / name).symlink_to(ROOT / name)
    return work


def test_pages_exist_and_have_commands() -> None:
    names = {p.name for p in PAGES}
    assert {"README.md", "quickstart.md", "howto_unlearn_classifier.md", "tutorial_verify_a_rate.md"} <= names
    assert sum(len(runnable(p)) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_shell_blocks_are_bash_and_no_command_hides_in_an_indented_block(page: Path) -> None:
    bad = [f"```{lang} block: use ```bash (runnable) or ```text (output)"
           for lang, _ in blocks(page) if lang in SHELL_LANGS - {"bash"}]
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    bad += [f"indented command (use a ```bash block): {line.strip()}" for line in text.splitlines()
            if line.startswith("    ") and line.strip().startswith(COMMAND_WORDS)]
    for lang, body in blocks(page):
        first = body.lstrip().splitlines()[0] if body.strip() else ""
        if first.startswith(ILLUSTRATION) and len(first[len(ILLUSTRATION):].strip()) < 8:
            bad.append(f"an illustration must say why it cannot run: {first!r}")
        if lang == "bash" and not first.startswith(ILLUSTRATION):
            bad += [f"runnable block installs packages: {' '.join(a)}" for a in commands(body) if "install" in a]
    assert not bad, f"{page.name}:\n" + "\n".join(bad)


def test_parsing_of_blocks_commands_and_smoke_arguments(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("x\n\n```bash\nofmu bench --benchmark digits \\\n    --seeds 3  # comment\n```\n\n"
                    "1. item\n\n    ```bash\n    # illustration: needs a GPU\n"
                    "    ofmu unlearn --device cuda\n    ```\n\n"
                    "```python\nprint(1)\n```\n")
    assert [lang for lang, _ in blocks(page)] == ["bash", "bash", "python"]
    assert runnable(page) == [["ofmu", "bench", "--benchmark", "digits", "--seeds", "3"]]
    assert smoke(["ofmu", "bench", "--benchmark", "digits", "--seeds", "3"])[-4:] == ["--seeds", "1", "--budget", "1"]
    assert smoke(["ofmu", "rates", "--quick"]) == ["ofmu", "rates", "--quick", "penalty_bias"]
    assert smoke(["ofmu", "rates", "outer_linear"]) == ["ofmu", "rates", "outer_linear"]
    assert smoke(["make", "demo"]) == ["make", "demo"]
    assert commands("python -c 'a = 1  # not a comment\nprint(a)' x  # comment: it's\nofmu references") == [
        ["python", "-c", "a = 1  # not a comment\nprint(a)", "x"], ["ofmu", "references"]]


def _run_page(page: Path, tmp_path: Path, cache: Path) -> list[dict[str, object]]:
    cmds = [smoke(argv) for argv in runnable(page)]
    env = {**os.environ, "OFMU_CACHE_DIR": str(cache), "OFMU_CACHE": str(cache / "lm"), "MPLBACKEND": "Agg",
           "OFMU_PROGRESS": "off",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT)], input=json.dumps(cmds), cwd=_workdir(tmp_path),
                       capture_output=True, text=True, timeout=3600, env=env)  # hang guard only
    if "@@RESULTS@@" not in p.stdout:
        pytest.fail(f"the driver crashed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    results: list[dict[str, object]] = json.loads(p.stdout.rsplit("@@RESULTS@@", 1)[1])
    failed = [r for r in results if r["rc"] != 0]
    assert not failed, (f"{page.name}: command failed as written (smoke size):\n  {shlex.join(failed[0]['argv'])}\n"  # type: ignore[arg-type]
                        f"exit {failed[0]['rc']}\n{failed[0]['err']}\n{p.stderr[-3000:]}")
    assert len(results) == len(cmds)
    return results


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ofmu_cache")


@pytest.mark.timeout(3600)  # hang guard: a page runs several commands, and the CI machine may be loaded
@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: p.name)
def test_every_runnable_command_of_the_page_runs_as_written_at_smoke_size(
        page: Path, tmp_path: Path, model_cache: Path) -> None:
    pytest.importorskip("torch")
    _run_page(page, tmp_path, model_cache)
