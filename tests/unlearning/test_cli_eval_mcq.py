"""`ofmu eval --benchmark mcq --model DIR --data FILE`: a local model, a local MCQ file, WMDP-schema outputs."""

import json

from ofmu_opt.cli import main
from ofmu_opt.unlearning.models.hf import TinyGPT2Config, build_tiny_gpt2, save_causal_lm, train_tokenizer


def test_eval_mcq_writes_accuracies_in_the_wmdp_schema(tmp_path, capsys):
    questions = [
        {"question": "Which metal is liquid at room temperature?", "choices": ["iron", "mercury", "tin", "lead"],
         "answer": 1},
        {"question": "How many legs does a spider have?", "choices": ["six", "eight", "ten", "four"], "answer": 1},
        {"question": "Which planet is closest to the sun?", "choices": ["Venus", "Mars", "Mercury", "Earth"],
         "answer": 2},
    ]
    data = tmp_path / "mcq.jsonl"
    data.write_text("\n".join(json.dumps(q) for q in questions) + "\n", encoding="utf-8")
    texts = [q["question"] + " " + " ".join(q["choices"]) for q in questions] * 4
    tok = train_tokenizer(texts, vocab_size=300)
    model = build_tiny_gpt2(tok, TinyGPT2Config(n_layer=1, n_embd=16, n_head=2), seed=0)
    save_causal_lm(model, tok, tmp_path / "model")
    out = tmp_path / "out"
    code = main(["eval", "--benchmark", "mcq", "--model", str(tmp_path / "model"), "--data", str(data),
                 "--out", str(out), "-q"])
    assert code == 0
    summary = json.loads((out / "WMDP_SUMMARY.json").read_text(encoding="utf-8"))
    ev = json.loads((out / "WMDP_EVAL.json").read_text(encoding="utf-8"))
    assert set(summary) == {"mcq_acc", "mcq_acc_norm"}
    per_q = ev["mcq_acc"]["value_by_index"]
    assert len(per_q) == 3
    for item in per_q.values():
        # the predicted choice is the argmax of the log-likelihoods, and correctness follows from it
        assert item["pred_raw"] == max(range(4), key=lambda j: item["raw"][j])
        assert item["pred_norm"] == max(range(4), key=lambda j: item["norm"][j])
        assert item["correct_raw"] == float(item["pred_raw"] == item["answer"])
    acc = sum(item["correct_raw"] for item in per_q.values()) / 3
    acc_norm = sum(item["correct_norm"] for item in per_q.values()) / 3
    assert summary["mcq_acc"] == ev["mcq_acc"]["agg_value"] == acc
    assert summary["mcq_acc_norm"] == ev["mcq_acc_norm"]["agg_value"] == acc_norm
