"""TinyTOFU generator (determinism, splits, answers) and the TOFU file loader (schema, clear errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ofmu_opt.errors import ConfigError, DataError
from ofmu_opt.unlearning.data.tinytofu import TinyTofuConfig, generate_tinytofu, split_fraction
from ofmu_opt.unlearning.data.tofu_files import load_tofu_file, load_tofu_split

SMALL = TinyTofuConfig(n_authors=40, seed=7, n_retain_eval_authors=3)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = generate_tinytofu(SMALL), generate_tinytofu(SMALL)
    assert a.to_json() == b.to_json()
    assert a.fingerprint() == b.fingerprint()
    c = generate_tinytofu(TinyTofuConfig(n_authors=40, seed=8, n_retain_eval_authors=3))
    assert c.fingerprint() != a.fingerprint()


def test_items_have_paraphrase_three_wrong_answers_and_idk() -> None:
    d = generate_tinytofu(SMALL)
    assert len(d.qa) == 40 * 10
    for q in d.qa + d.holdout_qa:
        assert len(q.perturbed_answers) >= 3
        assert len(set(q.perturbed_answers)) == len(q.perturbed_answers)
        assert q.paraphrased_answer != q.answer
        assert q.paraphrased_answer not in q.perturbed_answers
        assert q.idk_answer
    for q in d.real_authors + d.world_facts:
        assert len(q.perturbed_answers) == 3 and q.answer not in q.perturbed_answers


@pytest.mark.parametrize("split,k", [("forget01", 1), ("forget05", 2), ("forget10", 4)])
def test_splits_are_disjoint_by_author_and_holdout_is_never_trained(split: str, k: int) -> None:
    d = generate_tinytofu(SMALL)
    s = d.split(split)
    forget_authors = {q.author for q in s.forget}
    retain_authors = {q.author for q in s.retain}
    assert len(forget_authors) == k == split_fraction(split, 40)
    assert not forget_authors & retain_authors
    assert forget_authors | retain_authors == set(range(40))
    full_authors = {q.author for q in d.full}
    hold = {q.author for q in s.holdout}
    assert len(hold) == k and not hold & full_authors
    assert not {q.author for q in s.retain_eval} & forget_authors
    # nested, as in TOFU
    assert {q.author for q in d.split("forget01").forget} <= {q.author for q in d.split("forget10").forget}


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="n_perturbed"):
        TinyTofuConfig(n_perturbed=2)
    with pytest.raises(ConfigError, match="split"):
        generate_tinytofu(SMALL).split("forget50")


REC = {"question": "Who?", "answer": "Me.", "paraphrased_answer": "It is me.", "perturbed_answer": ["You.", "Them."]}


def test_load_json_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([REC, REC]), encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps(REC) + "\n\n" + json.dumps(REC) + "\n", encoding="utf-8")
    for name in ("a.json", "b.jsonl"):
        items = load_tofu_file(tmp_path / name)
        assert len(items) == 2
        assert items[0].perturbed_answers == ("You.", "Them.")
        assert items[0].paraphrased_answer == "It is me."


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (json.dumps(REC).encode() + b"\n{oops\n", "line 2"),
        (json.dumps({"question": "Q", "answer": "A", "perturbed_answer": ["x"]}).encode(), "paraphrased_answer"),
        (json.dumps(dict(REC, perturbed_answer=[1, 2])).encode(), "list of strings"),
        (json.dumps(dict(REC, answer=3)).encode(), "expected a string"),
    ],
)
def test_bad_files_raise_data_error_naming_file(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "f.jsonl"
    p.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        load_tofu_file(p)
    assert "f.jsonl" in str(info.value)


def test_load_split_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="forget10"):
        load_tofu_split(tmp_path, "forget10")
    (tmp_path / "forget10_perturbed.json").write_text(json.dumps([REC] * 3), encoding="utf-8")
    (tmp_path / "holdout10.jsonl").write_text(json.dumps({"question": "Q", "answer": "A"}) + "\n", encoding="utf-8")
    ra = {"question": "Q", "answer": "A", "perturbed_answer": ["B", "C"]}
    (tmp_path / "real_authors_perturbed.json").write_text(json.dumps([ra]), encoding="utf-8")
    s = load_tofu_split(tmp_path, "forget10")
    assert len(s.forget) == 3 and len(s.holdout) == 1 and len(s.real_authors) == 1
    assert s.real_authors[0].paraphrased_answer == "A"
    assert s.world_facts == () and s.retain_eval == ()


def test_mask_pad_labels_experiment_option_reaches_the_prompt_template() -> None:
    """``--option experiment.mask_pad_labels=true`` turns on open-unlearning's pad=EOS label masking."""
    from ofmu_opt.unlearning.benchmarks.tofu_setup import LMExperimentConfig

    assert LMExperimentConfig().prompt.mask_pad_labels is False
    on = LMExperimentConfig(mask_pad_labels=True, template="chat").prompt
    assert on.mask_pad_labels is True and on.use_chat_template is True
