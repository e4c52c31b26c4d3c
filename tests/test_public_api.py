"""The public API is small, documented, and importing it pulls in no optional dependency."""

import subprocess
import sys

import ofmu_opt


def test_public_names_resolve_and_have_docstrings():
    for name in ofmu_opt.__all__:
        obj = getattr(ofmu_opt, name)
        if name != "__version__":
            assert (obj.__doc__ or "").strip(), name


def test_import_does_not_pull_torch_or_cvxpy():
    code = "import sys, ofmu_opt; ofmu_opt.get_reference('P3'); print('torch' in sys.modules, 'cvxpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_import_works_with_torch_blocked():
    code = (
        "import sys; sys.modules['torch'] = None; import ofmu_opt; from ofmu_opt.core import gpbgd; "
        "r = ofmu_opt.get_reference('QOFMU'); print(ofmu_opt.with_continuation(gpbgd(), tol=1e-4)"
        ".run(r.problem, None, r.y0).success)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
