"""The built documentation site: strict build, rendered math, links and images that resolve.

One strict ``mkdocs build`` per test session is shared by every test here (and by the xdist workers,
through a lock file beside pytest's base temporary directory), so the checks cost one build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
KATEX_DIR = ROOT / "docs" / "javascripts" / "katex"
KATEX_VERSION = "0.19.1"
MKDOCS = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")

pytestmark = pytest.mark.skipif(not Path(MKDOCS).exists(), reason="mkdocs is a dev extra")

# raw TeX left in the text of a page: $...$ with a non-space after the opening and before the closing $
RAW_INLINE = re.compile(r"(?<![\\$\w])\$(?=[^\s$])[^$\n]{1,300}?(?<=[^\s$\\])\$(?![\w$])")
RAW_DISPLAY = re.compile(r"\$\$[^$]+\$\$", re.S)


@dataclass
class Site:
    """The result of the shared strict build."""

    root: Path
    returncode: int
    log: str


def _build(site_dir: Path) -> Site:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    p = subprocess.run([MKDOCS, "build", "--strict", "--site-dir", str(site_dir)], cwd=ROOT,
                       capture_output=True, text=True, timeout=3600, env=env)  # hang guard only
    return Site(site_dir, p.returncode, p.stdout[-4000:] + p.stderr[-4000:])


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """Build the site once per session; xdist workers share the build through a lock file."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    site_dir, record = shared / "docs_site", shared / "docs_site.json"
    try:
        import fcntl
    except ImportError:  # no POSIX locks: each worker builds its own copy
        return _build(base / "docs_site")
    with open(shared / "docs_site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if record.exists():
            data = json.loads(record.read_text())
            return Site(Path(data["root"]), data["returncode"], data["log"])
        built = _build(site_dir)
        record.write_text(json.dumps({"root": str(built.root), "returncode": built.returncode, "log": built.log}))
        return built


class _Page(HTMLParser):
    """Collects a page's ids, its links and sources, and its prose text (outside code, scripts, math)."""

    SKIP_TAGS = {"code", "pre", "script", "style", "kbd", "samp"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (tag.attr, url)
        self.text: list[str] = []
        self.math: list[tuple[bool, str]] = []  # (display, tex) of every arithmatex element
        self._stack: list[tuple[str, bool, bool]] = []  # (tag, skip text, is math)
        self._math_buf: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.ids.add(a["name"])
        for attr in ("href", "src"):
            if attr in a and tag in {"a", "img", "link", "script", "source"}:
                self.refs.append((f"{tag}.{attr}", a[attr]))
        if tag in self.VOID:
            return
        is_math = "arithmatex" in a.get("class", "").split()
        parent_skip = bool(self._stack and self._stack[-1][1])
        skip = parent_skip or tag in self.SKIP_TAGS or is_math
        if is_math and self._math_buf is None:
            self._math_buf = []
        self._stack.append((tag, skip, is_math))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        while self._stack:
            t, _, is_math = self._stack.pop()
            if is_math and self._math_buf is not None:
                self.math.append((t == "div", "".join(self._math_buf)))
                self._math_buf = None
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._math_buf is not None:
            self._math_buf.append(data)
        if not (self._stack and self._stack[-1][1]):
            self.text.append(data)


def _pages(site: Site) -> dict[Path, _Page]:
    out = {}
    for path in sorted(site.root.rglob("*.html")):
        parser = _Page()
        parser.feed(path.read_text(encoding="utf-8"))
        out[path] = parser
    return out


@pytest.fixture(scope="module")
def pages(site: Site) -> dict[Path, _Page]:
    if site.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{site.log}")
    return _pages(site)


def test_site_builds_strictly(site: Site) -> None:
    assert site.returncode == 0, site.log
    assert (site.root / "theory" / "index.html").exists()


def test_no_raw_tex_left_in_the_text_of_any_page(pages: dict[Path, _Page], site: Site) -> None:
    raw = []
    for path, page in pages.items():
        text = "".join(page.text)
        for m in list(RAW_DISPLAY.finditer(text)) + list(RAW_INLINE.finditer(text)):
            raw.append(f"{path.relative_to(site.root)}: {m.group(0)[:80]!r}")
    assert not raw, "raw $...$ left in the built pages (math the extension did not pick up):\n" + "\n".join(raw)


def test_the_raw_math_detector_flags_raw_tex_and_ignores_code_and_prices() -> None:
    page = _Page()
    page.feed('<p>the penalty $\\Phi = L_f - \\beta s$ and <code>$HOME</code> cost $5 or $6</p>'
              '<span class="arithmatex">\\(x^2\\)</span>')
    text = "".join(page.text)
    assert [m.group(0) for m in RAW_INLINE.finditer(text)] == ["$\\Phi = L_f - \\beta s$"]
    assert page.math == [(False, "\\(x^2\\)")]


def test_theory_page_has_its_formulas_as_math_elements_and_loads_the_vendored_katex(
        pages: dict[Path, _Page], site: Site) -> None:
    theory = pages[site.root / "theory" / "index.html"]
    texts = [tex for _, tex in theory.math]
    assert len(texts) > 50
    assert any("\\Phi" in t for t in texts)
    assert any(display for display, _ in theory.math)
    srcs = {url for kind, url in theory.refs if kind in {"script.src", "link.href"}}
    assert "../javascripts/katex/katex.min.js" in srcs and "../javascripts/katex/katex.min.css" in srcs
    assert "../javascripts/katex-init.js" in srcs
    # no renderer from a CDN: every script and stylesheet of the page is a file of the site
    assert not [u for u in srcs if urlsplit(u).scheme or u.startswith("//")]


def test_vendored_katex_is_complete_with_its_licence() -> None:
    assert "MIT License" in (KATEX_DIR / "LICENSE").read_text()
    assert KATEX_VERSION in (KATEX_DIR / "VENDORED.txt").read_text()
    js = (KATEX_DIR / "katex.min.js").read_text(encoding="utf-8")
    assert f'version:"{KATEX_VERSION}"' in js.replace(" ", "")
    css = (KATEX_DIR / "katex.min.css").read_text(encoding="utf-8")
    woff2 = re.findall(r"url\((fonts/[^)]+\.woff2)\)", css)
    assert len(woff2) >= 19
    missing = [f for f in woff2 if not (KATEX_DIR / f).exists()]
    assert not missing, f"fonts listed by katex.min.css but not vendored: {missing}"


def _target(site: Site, page: Path, url: str) -> tuple[Path, str] | None:
    parts = urlsplit(url)
    if parts.scheme or url.startswith("//") or url.startswith("mailto:"):
        return None
    path = unquote(parts.path)
    if not path:
        target = page
    elif path.startswith("/"):
        target = site.root / path.lstrip("/")
    else:
        target = (page.parent / path).resolve()
    if target.is_dir() or path.endswith("/"):
        target = target / "index.html"
    return target, unquote(parts.fragment)


def test_every_internal_link_image_and_anchor_of_the_site_resolves(pages: dict[Path, _Page], site: Site) -> None:
    broken = []
    for page_path, page in pages.items():
        if page_path.name == "404.html":  # served from any depth; its links are absolute by design
            continue
        for kind, url in page.refs:
            resolved = _target(site, page_path, url)
            if resolved is None:
                continue
            target, fragment = resolved
            where = f"{page_path.relative_to(site.root)}: {kind}={url}"
            if not target.exists():
                broken.append(f"{where} (no file)")
            elif fragment and target.suffix == ".html" and fragment not in pages[target.resolve()].ids:
                broken.append(f"{where} (no #{fragment})")
    assert not broken, "broken links in the built site:\n" + "\n".join(broken)


def test_the_link_checker_reports_a_missing_page_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text('<h2 id="x">x</h2>')
    site = Site(tmp_path, 0, "")
    page = tmp_path / "index.html"
    assert _target(site, page, "a/#x") == (tmp_path / "a" / "index.html", "x")
    assert _target(site, page, "https://example.org/") is None
    assert not _target(site, page, "b/")[0].exists()  # type: ignore[index]


def _readme_links() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"\[([^\]]+)\]\(([^)\s]+)\)", text)


def _slug(heading: str) -> str:
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", s)


def test_every_relative_link_of_the_readme_resolves_to_a_file_and_heading() -> None:
    links = _readme_links()
    assert len(links) >= 5
    broken = []
    for label, url in links:
        parts = urlsplit(url)
        if parts.scheme:
            continue
        target = ROOT / unquote(parts.path)
        if not target.exists():
            broken.append(f"[{label}]({url}): no file")
        elif parts.fragment and target.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", target.read_text(encoding="utf-8"), flags=re.M)
            if parts.fragment not in {_slug(h) for h in headings}:
                broken.append(f"[{label}]({url}): no heading #{parts.fragment}")
    assert not broken, "\n".join(broken)


NODE_RENDER = r"""
const fs = require("fs");
const vm = require("vm");
const ctx = {window: {}, document: undefined};
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), ctx);
const katex = ctx.katex || ctx.window.katex || (ctx.module && ctx.module.exports);
const items = JSON.parse(fs.readFileSync(0, "utf8"));
const errors = [];
for (const [page, display, tex] of items) {
  try { katex.renderToString(tex, {displayMode: display, throwOnError: true, strict: "ignore"}); }
  catch (e) { errors.push(page + ": " + String(e.message).slice(0, 200)); }
}
process.stdout.write(JSON.stringify({count: items.length, errors}));
"""


def _strip_delims(tex: str) -> str:
    t = tex.strip()
    for o, c in (("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$"), ("$", "$")):
        if t.startswith(o) and t.endswith(c):
            return t[len(o):len(t) - len(c)]
    return t


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the vendored KaTeX; not on every machine")
def test_every_formula_of_the_site_is_valid_katex(pages: dict[Path, _Page], site: Site, tmp_path: Path) -> None:
    items = [(str(p.relative_to(site.root)), display, _strip_delims(tex))
             for p, page in pages.items() for display, tex in page.math]
    assert len(items) > 100
    script = tmp_path / "render.js"
    script.write_text(NODE_RENDER)
    p = subprocess.run(["node", str(script), str(KATEX_DIR / "katex.min.js")], input=json.dumps(items),
                       capture_output=True, text=True, timeout=3600)  # hang guard only
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["count"] == len(items)
    assert not out["errors"], "formulas KaTeX cannot render:\n" + "\n".join(out["errors"])


def test_no_page_loads_a_script_or_stylesheet_from_another_host(pages: dict[Path, _Page], site: Site) -> None:
    """The built site reads offline: scripts, stylesheets and images are files of the site (no CDN, no web fonts)."""
    remote = [f"{p.relative_to(site.root)}: {kind}={url}" for p, page in pages.items() for kind, url in page.refs
              if kind in {"script.src", "link.href", "img.src"} and (urlsplit(url).scheme in {"http", "https"}
                                                                   or url.startswith("//"))]
    assert not remote, "\n".join(remote)
