"""Digits splits and scenarios; CIFAR-10 pickle loading with the restricted unpickler."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from ofmu_opt.errors import ConfigError, DataError, UnsafeFileError
from ofmu_opt.unlearning.data.cifar10 import load_cifar10_splits, read_cifar_batch
from ofmu_opt.unlearning.data.common import make_scenario, parse_scenario
from ofmu_opt.unlearning.data.digits import load_digits_splits


def test_digits_split_is_seeded_stratified_and_standardised():
    a, b, c = load_digits_splits(seed=3), load_digits_splits(seed=3), load_digits_splits(seed=4)
    assert np.array_equal(a.y_train, b.y_train) and np.array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_train, c.y_train)
    n = a.y_train.size + a.y_val.size + a.y_test.size
    assert n == 1797
    # every class appears in every split in roughly the 60/20/20 proportion
    for y in (a.y_val, a.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= 30
    assert np.allclose(a.x_train.mean(axis=0), 0.0, atol=1e-5)


def test_random_scenario_picks_ten_percent_of_train_with_seed():
    s = load_digits_splits(seed=0)
    sc = make_scenario(s, parse_scenario("random10"), seed=1)
    assert sc.forget_idx.size == round(0.1 * s.y_train.size)
    assert np.intersect1d(sc.forget_idx, sc.retain_idx).size == 0
    assert sc.forget_idx.size + sc.retain_idx.size == s.y_train.size
    assert sc.test_keep.all()
    again = make_scenario(s, parse_scenario("random10"), seed=1)
    assert np.array_equal(sc.forget_idx, again.forget_idx)


def test_class_scenario_forgets_the_whole_class_and_drops_it_from_ta():
    s = load_digits_splits(seed=0)
    sc = make_scenario(s, parse_scenario("class:3"), seed=0)
    assert (s.y_train[sc.forget_idx] == 3).all()
    assert (s.y_train[sc.retain_idx] != 3).all()
    assert not (s.y_test[sc.test_keep] == 3).any() and (s.y_test[~sc.test_keep] == 3).all()


@pytest.mark.parametrize("bad", ["random", "random0", "random100", "class:", "class:x", "foo", ""])
def test_bad_scenarios_raise_config_error(bad):
    with pytest.raises(ConfigError, match="scenario"):
        parse_scenario(bad)


def test_class_out_of_range_raises():
    with pytest.raises(ConfigError, match="class must be in 0..9"):
        make_scenario(load_digits_splits(seed=0), parse_scenario("class:10"), seed=0)


def _write_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    payload = {b"batch_label": b"fixture", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    return data, labels


@pytest.fixture
def cifar_dir(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for i in range(1, 6):
        _write_batch(d / f"data_batch_{i}", 20, seed=i)
    _write_batch(d / "test_batch", 15, seed=99)
    return tmp_path


def test_cifar_batch_round_trips_through_the_restricted_unpickler(cifar_dir):
    data, labels = _write_batch(cifar_dir / "one", 7, seed=5)
    x, y = read_cifar_batch(cifar_dir / "one")
    assert x.shape == (7, 3, 32, 32) and x.dtype == np.uint8
    assert np.array_equal(x.reshape(7, -1), data) and y.tolist() == labels


def test_cifar_loader_builds_normalised_splits(cifar_dir):
    s = load_cifar10_splits(cifar_dir, seed=0, val_fraction=0.1)
    assert s.input_shape == (3, 32, 32)
    assert s.y_train.size + s.y_val.size == 100 and s.y_val.size == 10 and s.y_test.size == 15
    assert s.x_train.dtype == np.float32 and abs(float(s.x_train.mean())) < 1.0


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_rejected_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    evil = {b"data": _Evil(marker), b"labels": [0]}
    (d / "data_batch_1").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(UnsafeFileError, match=r"posix\.system|os\.system|nt\.system"):
        read_cifar_batch(d / "data_batch_1")
    assert not marker.exists()


def test_builtins_eval_global_is_rejected(tmp_path):
    p = tmp_path / "b"
    p.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(UnsafeFileError, match="builtins.eval"):
        read_cifar_batch(p)


def test_wrong_structure_and_missing_files_are_data_errors(tmp_path):
    p = tmp_path / "b"
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), dtype=np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match=r"uint8 \[N, 3072\]"):
        read_cifar_batch(p)
    with pytest.raises(DataError, match="lacks"):
        load_cifar10_splits(tmp_path)


def test_legacy_numpy_core_module_name_is_accepted(tmp_path):
    # files written by older numpy (and the official CIFAR-10 pickles) name numpy.core.multiarray
    data = np.arange(3072 * 2, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    raw = pickle.dumps({b"data": data, b"labels": [1, 2]}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in raw
    p = tmp_path / "legacy"
    p.write_bytes(raw)
    x, y = read_cifar_batch(p)
    assert np.array_equal(x.reshape(2, -1), data) and y.tolist() == [1, 2]
