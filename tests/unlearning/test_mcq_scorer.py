"""Multiple-choice scorer on a model with known token probabilities; MCQ and corpus loaders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_tofu_metrics import PROBS, BigramLM

from ofmu_opt.errors import DataError
from ofmu_opt.unlearning.data.corpus import MCQItem, chunk_corpus, load_mcq_file, load_text_corpus
from ofmu_opt.unlearning.metrics.mcq import continuation_logprobs, mcq_accuracy, pick, score_mcq
from ofmu_opt.unlearning.models.hf import PromptTemplate, train_tokenizer


def test_continuation_logprobs_match_the_table() -> None:
    # after token 0: p(1) = .3, p(2) = .5, p(3) = .1; after 3: p(4) = .4
    got = continuation_logprobs(BigramLM(PROBS), [[0], [0], [0]], [[1], [2], [3, 4]], pad_id=0, batch_size=2)
    assert got == pytest.approx([math.log(0.3), math.log(0.5), math.log(0.1) + math.log(0.4)], rel=1e-12)
    # prompt [1]: p(2 | 1) = .6 then p(3 | 2) = .5
    (two,) = continuation_logprobs(BigramLM(PROBS), [[0, 1]], [[2, 3]], pad_id=0)
    assert two == pytest.approx(math.log(0.6 * 0.5), rel=1e-12)


def test_predictions_and_accuracy_are_what_the_probabilities_imply() -> None:
    lps = continuation_logprobs(BigramLM(PROBS), [[0]] * 3, [[1], [2], [3, 4]], pad_id=0)
    assert pick([lps]) == [1]  # token 2 has the highest probability after 0
    # length normalisation can change the winner: divide by lengths 1, 10, 1
    assert pick([[lps[0] / 1, lps[1] / 10, lps[2] / 1]]) == [1]
    assert pick([[lps[0] / 1, lps[1] / 1, lps[2] / 10]]) == [2]
    rows = [
        {"correct_raw": 1.0, "correct_norm": 0.0},
        {"correct_raw": 0.0, "correct_norm": 0.0},
        {"correct_raw": 1.0, "correct_norm": 1.0},
        {"correct_raw": 1.0, "correct_norm": 0.0},
    ]
    assert mcq_accuracy(rows) == {"acc": 0.75, "acc_norm": 0.25}


class _CharTok:
    """A character tokenizer over 'abcd' (ids 1-4), BOS/pad 0; answer_prefix is empty in the template."""

    pad_token_id = 0
    eos_token_id = 0
    bos_token_id = 0
    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [" abcd".index(c) for c in text if c in "abcd"]}


def test_score_mcq_end_to_end_on_known_probabilities() -> None:
    tmpl = PromptTemplate(user_start="", user_end="", assistant_start="", answer_prefix="", add_bos=True)
    # prompt = [BOS=0] (the question has no tokenizable characters); choices "a" (1), "b" (2), "cd" (3, 4)
    items = [MCQItem("?", ("a", "b", "cd"), 1), MCQItem("?", ("a", "b", "cd"), 0)]
    rows = score_mcq(BigramLM(PROBS), _CharTok(), items, tmpl, batch_size=4)
    assert rows[0]["raw"] == pytest.approx([math.log(0.3), math.log(0.5), math.log(0.04)], rel=1e-12)
    assert rows[0]["norm"] == pytest.approx([math.log(0.3), math.log(0.5), math.log(0.04) / 2], rel=1e-12)
    assert [r["pred_raw"] for r in rows] == [1, 1]
    assert mcq_accuracy(rows) == {"acc": 0.5, "acc_norm": 0.5}


def test_mcq_loader_accepts_index_and_letter_and_rejects_bad_answers(tmp_path: Path) -> None:
    p = tmp_path / "q.jsonl"
    recs = [
        {"question": "Q1", "choices": ["x", "y", "z", "w"], "answer": 3},
        {"question": "Q2", "choices": ["x", "y"], "answer": "a"},
    ]
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n", encoding="utf-8")
    items = load_mcq_file(p)
    assert [i.answer for i in items] == [3, 0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "Q", "choices": ["x", "y"], "answer": 2}]), encoding="utf-8")
    with pytest.raises(DataError, match="answer"):
        load_mcq_file(bad)
    bad.write_text(json.dumps([{"question": "Q", "choices": ["x"], "answer": 0}]), encoding="utf-8")
    with pytest.raises(DataError, match="choices"):
        load_mcq_file(bad)


def test_corpus_loading_and_chunking(tmp_path: Path) -> None:
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "alpha beta gamma delta " * 10}) + "\n", encoding="utf-8")
    docs = load_text_corpus(tmp_path / "c.jsonl")
    tok = train_tokenizer([d.text for d in docs], vocab_size=300)
    chunks, srcs = chunk_corpus(docs, tok, max_length=8)
    assert all(len(c.input_ids) <= 8 for c in chunks) and len(chunks) == len(srcs) >= 2
    assert all(c.input_ids[0] == tok.bos_token_id and c.labels[0] == -100 for c in chunks)
    flat = [t for c in chunks for t in c.input_ids[1:]]
    assert tok.decode(flat) == docs[0].text  # chunks cover the document exactly, in order
    (tmp_path / "e.txt").write_text("\n\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no non-empty"):
        load_text_corpus(tmp_path / "e.txt")
    (tmp_path / "n.jsonl").write_text(json.dumps({"body": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="'text'"):
        load_text_corpus(tmp_path / "n.jsonl")
