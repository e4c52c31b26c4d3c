"""Every public module is in the API reference and every public name has a docstring."""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import ofmu_opt

ROOT = Path(__file__).resolve().parents[1]


def _public_modules():
    for m in pkgutil.walk_packages(ofmu_opt.__path__, "ofmu_opt."):
        parts = m.name.split(".")
        if any(p.startswith("_") for p in parts) or parts[1] == "cli":
            continue
        yield m.name


def _documented_modules():
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md"))
    return set(re.findall(r"^::: ([\w.]+)", text, flags=re.M))


def test_every_public_module_with_all_is_in_the_api_reference_and_every_name_has_a_docstring():
    documented = _documented_modules()
    missing_pages, missing_docs = [], []
    for name in _public_modules():
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:  # an optional extra that is not installed
            pytest.skip(f"{name}: {exc}")
        names = getattr(mod, "__all__", None)
        if not names or not (mod.__doc__ or "").strip():
            if names is not None or not (mod.__doc__ or "").strip():
                missing_docs.append(f"{name} (module docstring)")
            continue
        # a package that re-exports its submodules' names is documented through those submodules
        in_package = hasattr(mod, "__path__") and any(d.startswith(name + ".") for d in documented)
        if name not in documented and not in_package and name.rsplit(".", 1)[0] not in documented:
            missing_pages.append(name)
        for attr in names:
            obj = getattr(mod, attr)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
                missing_docs.append(f"{name}.{attr}")
    assert not missing_pages, f"modules missing from docs/api: {missing_pages}"
    assert not missing_docs, f"public names without a docstring: {missing_docs}"


# The strict site build and the checks on the built pages are in tests/test_docs_site.py (one shared build).
