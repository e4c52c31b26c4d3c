"""The built site in a real browser: the math is rendered by the vendored KaTeX, screenshots for review.

Opt-in (``make docs-check``): runs only when ``OFMU_DOCS_SCREENSHOTS`` names an output folder and a
headless Chromium is installed (``apt-get install chromium`` on Debian). Not part of ``make test``:
CI machines have no browser. It reuses the shared strict build of ``test_docs_site.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_docs_site import Site, _Page, pages, site  # noqa: F401  (shared fixtures: one build)

OUT = os.environ.get("OFMU_DOCS_SCREENSHOTS", "")
BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(b)), None)
#: the pages a reviewer looks at first, and the math-heavy ones
MAIN_PAGES = ["index.html", "quickstart/index.html", "theory/index.html", "notation/index.html",
              "solver_options/index.html", "tutorial_verify_a_rate/index.html",
              "howto_unlearn_classifier/index.html", "deviations/index.html"]

pytestmark = [
    pytest.mark.skipif(not OUT, reason="opt-in: set OFMU_DOCS_SCREENSHOTS=DIR (make docs-check)"),
    pytest.mark.skipif(BROWSER is None, reason="needs a headless chromium"),
]


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=8000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=3600)  # hang guard only


def _existing(site_root: Path) -> list[str]:
    return [p for p in MAIN_PAGES if (site_root / p).exists()]


@pytest.mark.parametrize("page", MAIN_PAGES)
def test_page_renders_every_formula_in_the_browser(page: str, site: Site, pages: dict) -> None:  # noqa: F811
    path = site.root / page
    if not path.exists():
        pytest.skip(f"{page} is not in this build")
    p = _chromium("--dump-dom", path.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    parser = _Page()
    parser.feed(path.read_text(encoding="utf-8"))
    n_math = len(parser.math)
    assert f'data-math-rendered="{n_math}"' in dom, "katex-init.js did not run over every math element"
    assert "data-katex-error" not in dom
    assert len(re.findall(r'data-katex-done="1"', dom)) == n_math
    assert 'class="katex-error"' not in dom, "KaTeX could not parse a formula (shown in red on the page)"
    if n_math:
        assert 'class="katex"' in dom or 'class="katex-display"' in dom


def test_screenshots_of_the_main_pages(site: Site, pages: dict) -> None:  # noqa: F811
    out = Path(OUT).resolve()
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for page in _existing(site.root):
        name = page.replace("/index.html", "").replace(".html", "") or "index"
        png = out / f"{name}.png"
        p = _chromium("--window-size=1280,2400", f"--screenshot={png}", (site.root / page).as_uri())
        assert p.returncode == 0, p.stderr[-2000:]
        assert png.exists() and png.stat().st_size > 10_000
        made.append(png.name)
    assert "theory.png" in made
    print(f"screenshots in {out}: {', '.join(made)}")
