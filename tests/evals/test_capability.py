"""Capability engine on the tiny random model: MMLU letter scoring, KL drift and the quick suite."""

from __future__ import annotations

import copy

import pytest
import torch

from opct.data.sources import MCQItem
from opct.evals import capability as cap
from opct.models import load_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def perturbed(tiny):
    other = copy.deepcopy(tiny[0])
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return other


ITEMS = [
    MCQItem("q1", "What is 2 + 2?", ["3", "4", "5", "6"], "B", "arithmetic"),
    MCQItem("q2", "Which is a color?", ["red", "dog", "run", "seven"], "A", "words"),
    MCQItem("q3", "Capital of France?", ["Rome", "Madrid", "Paris", "Berlin"], "C", "geography"),
    MCQItem("q4", "Largest number?", ["1", "2", "3", "4"], "D", "arithmetic"),
]


def test_neutral_prompts():
    prompts = cap.neutral_prompts()
    assert len(prompts) >= 60 and len(set(prompts)) == len(prompts)
    assert all(isinstance(p, str) and len(p) > 10 for p in prompts)


def test_mmlu_accuracy_matches_letter_argmax(tiny):
    from opct.evals.mcq import letter_probs

    model, tok = tiny
    out = cap.mmlu_accuracy(model, tok, ITEMS, batch_size=3)
    probs = letter_probs(model, tok, [cap.mmlu_conversation(it) for it in ITEMS])
    expected = [float("ABCD"[i] == it.answer) for i, it in zip(probs.argmax(-1).tolist(), ITEMS)]
    assert out["n"] == 4 and out["value"] == pytest.approx(sum(expected) / 4)
    assert out["ci_low"] <= out["value"] <= out["ci_high"]
    assert set(out["per_subject"]) == {"arithmetic", "words", "geography"}
    assert out["per_subject"]["arithmetic"]["n"] == 2
    prompt = cap.mmlu_conversation(ITEMS[0])[0]["content"]
    assert "(B) 4" in prompt and "#### <letter>" in prompt
    assert "records" not in out
    records = cap.mmlu_accuracy(model, tok, ITEMS, batch_size=3, return_records=True)["records"]
    assert [r["id"] for r in records] == [it.id for it in ITEMS]
    assert [r["correct"] for r in records] == expected
    assert all(r["correct"] == float(r["predicted"] == r["answer"]) for r in records)


def test_kl_from_base_self_is_zero_and_perturbed_positive(tiny, perturbed):
    model, tok = tiny
    prompts = cap.neutral_prompts()[:4]
    same = cap.kl_from_base(model, model, tok, prompts, max_new_tokens=8, batch_size=3)
    assert same["n"] == 4 and abs(same["value"]) < 1e-6 and same["mean_tokens"] > 0
    drift = cap.kl_from_base(model, perturbed, tok, prompts, max_new_tokens=8, batch_size=3)
    assert drift["n"] == 4 and drift["value"] > 1e-4 and drift["ci_low"] > 0
    # rows per generate call (padding, batch composition) change nothing
    one_by_one = cap.kl_from_base(model, perturbed, tok, prompts, max_new_tokens=8, batch_size=3, decode_batch=1)
    assert one_by_one["value"] == pytest.approx(drift["value"], rel=1e-4)
    assert one_by_one["mean_tokens"] == drift["mean_tokens"]


def test_completion_kl_matches_unpadded_reference(tiny, perturbed):
    """Batched, padded scoring equals a one-sequence-at-a-time full-logits computation."""
    model, tok = tiny
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    completions = [[20, 21, 22], [23], [24, 25, 26, 27, 28]]
    batched = cap.completion_kl(model, perturbed, tok, prompts, completions, batch_size=3)
    with torch.no_grad():
        for p, c, got in zip(prompts, completions, batched):
            ids = torch.tensor([p + c])
            lp = model(input_ids=ids).logits[0, len(p) - 1 : -1].float().log_softmax(-1)
            lq = perturbed(input_ids=ids).logits[0, len(p) - 1 : -1].float().log_softmax(-1)
            ref = (lp.exp() * (lp - lq)).sum(-1).mean().item()
            assert got == pytest.approx(ref, rel=1e-3, abs=1e-6)


def test_quick_suite_on_tiny_model(tiny, perturbed):
    model, tok = tiny
    out = cap.run_capability_suite(model, tok, suite="quick", base_model=perturbed, limit=3, progress=False,
                                   max_new_tokens=8)
    assert list(out) == list(cap.BENCHMARKS)
    for key in ("mmlu_accuracy", "math_accuracy", "ifeval_accuracy", "kl_from_base", "over_refusal_rate"):
        r = out[key]
        assert r["n"] == 3, (key, r)
        assert {"value", "ci_low", "ci_high", "n"} <= set(r)
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    for key in ("gsm8k_accuracy", "math500_accuracy"):
        assert out[key]["n"] == 0 and out[key]["value"] is None and out[key]["skipped"]


def test_suite_rejects_bad_input(tiny, tmp_path):
    model, tok = tiny
    with pytest.raises(ValueError, match="suite"):
        cap.run_capability_suite(model, tok, suite="huge")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{oops\n', encoding="utf-8")
    from opct.evals.math import BenchmarkDataError

    with pytest.raises(BenchmarkDataError, match="bad.jsonl:2"):  # fails before any model time is spent
        cap.run_capability_suite(model, tok, file=bad, limit=1, progress=False)


def test_suite_with_gsm8k_file_and_no_base_model(tiny, tmp_path):
    model, tok = tiny
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text('{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\\n#### 5"}\n', encoding="utf-8")
    out = cap.run_capability_suite(model, tok, file=gsm, limit=1, progress=False, max_new_tokens=4)
    assert out["gsm8k_accuracy"]["n"] == 1 and out["gsm8k_accuracy"]["source"] == str(gsm)
    assert "without a file" in out["math500_accuracy"]["skipped"]
    assert out["kl_from_base"]["n"] == 0 and out["kl_from_base"]["skipped"] == "no base model given"


def test_kl_from_the_adapter_off_equals_kl_from_a_second_base(tiny_model_dir, tmp_path):
    """The demo's reference for a trained model: its own weights with the merged adapter disabled
    (peft unmerges it) give the KL a separately loaded base gives."""
    from opct.models import add_lora

    base, tok = load_model(tiny_model_dir)
    lora = add_lora(load_model(tiny_model_dir)[0], r=4, alpha=8)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a trained-looking adapter (B starts at zero)
    lora.save_pretrained(tmp_path / "adapter")
    tok.save_pretrained(tmp_path / "adapter")
    merged, _ = load_model(str(tmp_path / "adapter"))
    prompts = cap.neutral_prompts()[:4]
    expected = cap.kl_from_base(merged, base, tok, prompts, max_new_tokens=8)
    model, base_view = cap.load_with_base_view(str(tmp_path / "adapter"))
    got = cap.kl_from_base(model, base_view, tok, prompts, max_new_tokens=8)
    assert expected["value"] > 1e-4
    assert got["value"] == pytest.approx(expected["value"], rel=1e-3)
    assert got["mean_tokens"] == expected["mean_tokens"]
    # The evaluated model is plain (peft's wrappers out of its forward) and still the trained one after
    # the base view has been used: the adapter is merged again.
    from peft.tuners.lora import LoraLayer

    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)
        assert torch.allclose(base_view(input_ids=ids).logits, base(input_ids=ids).logits, atol=1e-4)
