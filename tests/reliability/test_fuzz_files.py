"""Property-based fuzzing of the files the package reads back: checkpoint manifests, run records, model
configs (``config.json`` of a model directory), TOFU data files, JSON and TOML text.

Properties:

- any input either works or raises an :class:`~ofmu_opt.errors.OfmuError`, never another exception
  (RecursionError, KeyError, TypeError, ValueError, OSError ...);
- an edited checkpoint manifest or run record is never used: unless the edit left the content unchanged,
  loading it raises.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ofmu_opt._io import atomic_write_record, canonical_json, loads_json, loads_toml, read_record
from ofmu_opt.errors import CheckpointError, DataError, IntegrityError, OfmuError

FUZZ = settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow], deadline=None)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(
        [
            "tensor",
            "ndarray",
            "float",
            "namedtuple",
            "tuple",
            "list",
            "dict",
            "@",
            "t0",
            "cpu",
            "cuda:0",
            "inf",
            "nan",
            "ofmu_opt.core.steps:SgdState",
            "os:system",
            "../x",
            "tensors-x.safetensors",
        ]
    ),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(["@", "key", "items"])), inner, max_size=4),
    ),
    max_leaves=12,
)


# ----------------------------------------------------------------------------------- checkpoint manifests

_BASE: dict[str, Any] = {}


def _base_checkpoint() -> tuple[Path, dict[str, Any]]:
    """One valid checkpoint (saved once), copied into a fresh directory per example."""
    torch = pytest.importorskip("torch")
    from ofmu_opt.backends.checkpoint import save_checkpoint
    from ofmu_opt.core.steps import SgdState

    if not _BASE:
        d = Path(tempfile.mkdtemp(prefix="ofmu-fuzz-ckpt-"))
        save_checkpoint(
            d,
            {"w": torch.arange(3.0), "rule": SgdState(2), "rho": float("inf"), "h": [1, (2.5, "s")]},
            meta={"step": 39, "history": [0.5, 0.25], "elapsed_s": 1.5},
        )
        _BASE["dir"] = d
        _BASE["manifest"] = json.loads((d / "manifest.json").read_text())
    return _BASE["dir"], _BASE["manifest"]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = root
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return root


@FUZZ
@given(data=st.data(), reseal=st.booleans())
def test_any_edit_of_a_manifest_is_refused_or_harmless(data: st.DataObject, reseal: bool) -> None:
    from ofmu_opt.backends.checkpoint import load_checkpoint, manifest_digest

    base_dir, base = _base_checkpoint()
    paths = _paths(base)
    path = data.draw(st.sampled_from(paths), label="path")
    value = data.draw(JSON_VALUES, label="value")
    man = _set(copy.deepcopy(base), path, value)
    if reseal and isinstance(man, dict):
        man["digest"] = manifest_digest(man)  # a forger who recomputes the hash: the structural checks hold
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        tensor = base["tensor_file"]
        (d / tensor).write_bytes((base_dir / tensor).read_bytes())
        (d / "manifest.json").write_text(json.dumps(man))
        changed = canonical_json(man) != canonical_json(base)
        try:
            tree, meta = load_checkpoint(d)
        except CheckpointError:
            return
        # loaded: only an unchanged manifest, or a forged one that is still a well-formed checkpoint
        assert not changed or reseal, f"an edited manifest was used: {path} = {value!r}"


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_manifest_text_loads_or_raises_checkpoint_error(text: str) -> None:
    from ofmu_opt.backends.checkpoint import load_checkpoint

    base_dir, base = _base_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / base["tensor_file"]).write_bytes((base_dir / base["tensor_file"]).read_bytes())
        (d / "manifest.json").write_text(text, encoding="utf-8", errors="surrogatepass")
        with pytest.raises(CheckpointError):
            load_checkpoint(d)


# ----------------------------------------------------------------------------------- run records


@FUZZ
@given(data=st.data())
def test_any_edit_of_a_run_record_is_refused_or_harmless(data: st.DataObject) -> None:
    record = {"key": "abc", "step": 39, "history": [{"step": 0, "loss": 0.5}], "elapsed_s": 2.5, "status": "ok"}
    with tempfile.TemporaryDirectory() as tmp:
        p = atomic_write_record(Path(tmp) / "run.json", record)
        stored = json.loads(p.read_text())
        path = data.draw(st.sampled_from(_paths(stored)), label="path")
        value = data.draw(JSON_VALUES, label="value")
        edited = _set(copy.deepcopy(stored), path, value)
        p.write_text(json.dumps(edited))
        try:
            back = read_record(p)
        except (IntegrityError, DataError):
            return
        assert canonical_json(back) == canonical_json(record), f"an edited record was used: {path} = {value!r}"


# ----------------------------------------------------------------------------------- model configs


_ST_EMPTY = len(b"{}").to_bytes(8, "little") + b"{}"  # a safetensors file holding no tensor


@FUZZ
@given(
    config=st.one_of(
        JSON_VALUES,
        st.fixed_dictionaries(
            {"model_type": st.one_of(st.sampled_from(["gpt2", "llama", ""]), JSON_SCALARS)},
            optional={
                k: st.one_of(st.integers(min_value=-(2**70), max_value=2**70), JSON_SCALARS)
                for k in ("vocab_size", "n_embd", "n_layer", "n_head", "hidden_size", "num_hidden_layers")
            }
            | {"architectures": JSON_VALUES},
        ),
    )
)
def test_any_model_config_is_accepted_or_a_package_error(config: Any) -> None:
    pytest.importorskip("torch")
    from ofmu_opt.unlearning.models.hf import validate_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        m = Path(tmp)
        (m / "config.json").write_text(json.dumps(config))
        (m / "tokenizer.json").write_text("{}")
        (m / "model.safetensors").write_bytes(_ST_EMPTY)
        try:
            out = validate_model_dir(m)
        except OfmuError:
            return
        assert isinstance(out, dict) and isinstance(out.get("model_type"), str) and out["model_type"]


# ----------------------------------------------------------------------------------- data files

TOFU_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "question": JSON_VALUES,
        "answer": JSON_VALUES,
        "paraphrased_answer": JSON_VALUES,
        "perturbed_answer": JSON_VALUES,
        "idk_answer": JSON_VALUES,
    },
)
TOFU_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(TOFU_FIELDS, max_size=4).map(json.dumps),
    st.lists(TOFU_FIELDS, max_size=4).map(lambda rs: "\n".join(json.dumps(r) for r in rs)),
    st.lists(TOFU_FIELDS, max_size=4).map(lambda rs: json.dumps({"data": rs})),
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
)


@FUZZ
@given(text=TOFU_TEXT, suffix=st.sampled_from([".json", ".jsonl"]))
def test_any_tofu_file_loads_or_raises_data_error(text: str, suffix: str) -> None:
    from ofmu_opt.unlearning.data.tofu_files import load_tofu_file

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"forget{suffix}"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            items = load_tofu_file(p)
        except DataError:
            return
        assert items and all(isinstance(i.question, str) and isinstance(i.answer, str) for i in items)


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.integers(1, 5000).map(lambda n: "[" * n),
        st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    )
)
def test_any_json_text_parses_or_raises_data_error(text: str) -> None:
    try:
        loads_json(text)
    except DataError:
        pass


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.integers(1, 3000).map(lambda n: "a = " + "[" * n + "]" * n),
        st.integers(1, 3000).map(lambda n: "a = " + "{b = " * n + "1" + "}" * n),
        st.integers(1, 300).map(lambda n: "a" + ".b" * n + " = 1"),
    )
)
def test_any_toml_text_parses_or_raises_data_error(text: str) -> None:
    try:
        out = loads_toml(text)
    except DataError:
        return
    assert isinstance(out, dict)
