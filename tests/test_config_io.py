from dataclasses import dataclass

import pytest

from ofmu_opt._config import config_from_dict, config_from_toml, config_to_toml
from ofmu_opt._io import atomic_write_json, read_json, safe_child
from ofmu_opt.errors import ConfigError, DataError, UnsafeFileError


@dataclass(frozen=True)
class _C:
    lr: float = 0.1
    steps: int = 3
    name: str = "a"
    flag: bool = False


def test_unknown_key_names_key_and_valid_options():
    with pytest.raises(ConfigError, match="'lrr'.*valid options: flag, lr, name, steps"):
        config_from_dict(_C, {"lrr": 1})


def test_coercion_from_strings_and_bad_types():
    assert config_from_dict(_C, {"lr": "0.5", "steps": "4", "flag": "true"}) == _C(0.5, 4, "a", True)
    with pytest.raises(ConfigError, match="steps: expected an integer, received 'x'"):
        config_from_dict(_C, {"steps": "x"})


def test_toml_round_trip():
    c = _C(lr=1e-3, steps=7, name='q"uote', flag=True)
    assert config_from_toml(_C, config_to_toml(c)) == c


def test_atomic_json_and_errors(tmp_path):
    p = atomic_write_json(tmp_path / "sub" / "a.json", {"v": float("nan"), "w": [1, 2]})
    assert read_json(p) == {"v": None, "w": [1, 2]}
    assert [f.name for f in (tmp_path / "sub").iterdir()] == ["a.json"]  # no temp file left
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json.*not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(DataError, match="expected a file, received a directory"):
        atomic_write_json(tmp_path / "sub", {})


def test_safe_child_rejects_traversal(tmp_path):
    assert safe_child(tmp_path, "a/b.json") == (tmp_path / "a" / "b.json").resolve()
    with pytest.raises(UnsafeFileError, match="escapes"):
        safe_child(tmp_path, "../evil.json")


def test_atomic_write_respects_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        p = atomic_write_json(tmp_path / "perm.json", {})
    finally:
        os.umask(old)
    assert (p.stat().st_mode & 0o777) == 0o644
