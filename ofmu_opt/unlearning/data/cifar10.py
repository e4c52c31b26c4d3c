"""CIFAR-10 from its python pickle batches on local disk, read with a restricted unpickler.

The official "python version" archive holds ``data_batch_1`` … ``data_batch_5`` and ``test_batch``,
each a pickled dict with ``b"data"`` (``uint8 [N, 3072]``, channel-major 32×32 images) and
``b"labels"`` (a list of ints). Those files are pickles, and a plain :func:`pickle.load` would run
whatever code a tampered file asks for. :class:`RestrictedUnpickler` only resolves the globals that the
format needs to rebuild numpy arrays (``numpy…multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``, and ``_codecs.encode`` which protocol-2 pickles use for byte strings); every other
global raises :class:`~ofmu_opt.errors.UnsafeFileError` before anything is called.

Example:
    >>> import io, pickle
    >>> payload = pickle.dumps(print)  # a global the format never needs
    >>> try:
    ...     RestrictedUnpickler(io.BytesIO(payload)).load()
    ... except UnsafeFileError as exc:
    ...     print("rejected")
    rejected
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError, UnsafeFileError
from .common import ClassificationSplits

__all__ = ["RestrictedUnpickler", "load_cifar10_splits", "read_cifar_batch"]

log = logging.getLogger(__name__)

_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, dicts, lists, bytes and numbers, and nothing else."""

    def __init__(self, file: io.BufferedIOBase | io.BytesIO) -> None:
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the allowed numpy/codecs globals; anything else raises UnsafeFileError."""
        if (module, name) not in _ALLOWED:
            raise UnsafeFileError(
                f"pickle global {module}.{name}: not allowed in a CIFAR-10 batch file (only numpy array "
                "reconstruction is)"
            )
        if module == "numpy.core.multiarray":  # numpy >= 2 renamed the module; avoid the deprecated alias
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids never occur in CIFAR-10 files: always UnsafeFileError."""
        raise UnsafeFileError("persistent ids are not allowed in a CIFAR-10 batch file")


def _get(d: dict[Any, Any], key: str) -> Any:
    for k in (key.encode("ascii"), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Read one CIFAR-10 batch file safely.

    Args:
        path: a ``data_batch_*`` or ``test_batch`` file.

    Returns:
        ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    Raises:
        DataError: missing file or wrong structure.
        UnsafeFileError: the pickle references a global the format does not need.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"CIFAR-10 batch {str(p)!r} does not exist or is not a file")
    raw = p.read_bytes()
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw)).load()
    except UnsafeFileError:
        raise
    except Exception as exc:  # any malformed pickle
        raise DataError(f"CIFAR-10 batch {str(p)!r} is not a valid pickle: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR-10 batch {str(p)!r}: expected a dict, received {type(obj).__name__}")
    try:
        data = _get(obj, "data")
        labels = _get(obj, "labels")
    except KeyError as exc:
        raise DataError(f"CIFAR-10 batch {str(p)!r}: missing key {exc.args[0]!r}") from exc
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = getattr(data, "shape", type(data).__name__)
        raise DataError(f"CIFAR-10 batch {str(p)!r}: expected data uint8 [N, 3072], received {got}")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != data.shape[0] or not np.issubdtype(lab.dtype, np.integer):
        raise DataError(f"CIFAR-10 batch {str(p)!r}: expected {data.shape[0]} integer labels")
    if lab.size and (lab.min() < 0 or lab.max() > 9):
        raise DataError(f"CIFAR-10 batch {str(p)!r}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), lab.astype(np.int64)


def _resolve_dir(path: str | os.PathLike[str]) -> Path:
    d = Path(path)
    if (d / "cifar-10-batches-py").is_dir():
        d = d / "cifar-10-batches-py"
    if not d.is_dir():
        raise DataError(f"CIFAR-10 directory {str(d)!r} does not exist")
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (d / f).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 directory {str(d)!r} lacks {', '.join(missing)}")
    return d


def load_cifar10_splits(
    path: str | os.PathLike[str], seed: int = 0, val_fraction: float = 0.1, limit: int | None = None
) -> ClassificationSplits:
    """Load CIFAR-10 from ``path`` (the ``cifar-10-batches-py`` directory or its parent).

    Images are scaled to [0, 1] and normalised with the usual per-channel mean and std; a seeded
    ``val_fraction`` of the training batches becomes the validation split; ``test_batch`` is the test split.

    Args:
        path: directory with the six batch files.
        seed: seed of the train/validation split (and of the subsample when ``limit`` is set).
        val_fraction: fraction of the training images held out for validation, in (0, 0.5].
        limit: optional cap on the number of training images (seeded subsample), for quick runs.

    Returns:
        The :class:`ClassificationSplits` with inputs ``[N, 3, 32, 32]``.
    """
    if not 0.0 < val_fraction <= 0.5:
        raise ConfigError(f"val_fraction: expected a value in (0, 0.5], received {val_fraction!r}")
    if limit is not None and limit < 10:
        raise ConfigError(f"limit: expected None or >= 10, received {limit!r}")
    d = _resolve_dir(path)
    parts = [read_cifar_batch(d / f) for f in TRAIN_FILES]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x_test, y_test = read_cifar_batch(d / TEST_FILE)
    rng = np.random.default_rng(seed)
    order = rng.permutation(x.shape[0])
    if limit is not None:
        order = order[:limit]
    n_val = max(1, int(round(val_fraction * order.size)))
    va, tr = np.sort(order[:n_val]), np.sort(order[n_val:])

    def norm(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        f = a.astype(np.float32) / 255.0
        return ((f - _MEAN[None, :, None, None]) / _STD[None, :, None, None]).astype(np.float32)

    log.info("CIFAR-10: %d train, %d val, %d test from %s", tr.size, va.size, y_test.size, d)
    return ClassificationSplits(
        "cifar10", norm(x[tr]), y[tr], norm(x[va]), y[va], norm(x_test), y_test, 10, (3, 32, 32)
    )
