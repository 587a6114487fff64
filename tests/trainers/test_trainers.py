"""Real training runs on a tiny model: alignment of teacher and student, masks, the loss falling
for each method, and kill-and-resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import build_tiny_model, build_tiny_tokenizer, tiny_trained_lora
from transformers import TrainerCallback

from opct.chat import render_prompt
from opct.data import ContrastivePair, pairs_to_dataset
from opct.generation import Completion, generate_ids, trim_completion
from opct.models import add_lora
from opct.trainers import ACTConfig, ACTTrainer, BCTConfig, BCTTrainer, OPCTConfig, OPCTTrainer
from opct.trainers.bct import check_answer_targets
from opct.trainers.opct import build_scoring_batch, completion_logits, consistency_kl


def make_pairs(n=8):
    return [
        ContrastivePair(
            id=f"p{i}", axis="test",
            clean=[{"role": "user", "content": f"What is {i} + {i}? Think about it."}],
            wrapped=[{"role": "user", "content": f"I'm sorry, but I think the answer is B. What is {i} + {i}?"}],
        )
        for i in range(n)
    ]


@pytest.fixture()
def tiny():
    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok)
    # A larger initialisation makes the tiny model's outputs depend strongly on the prompt, so
    # the clean and wrapped distributions differ and there is a KL to remove.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.1)
    return model, tok


def common(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, seed=0, save_steps=1000,
                lora_r=8, lora_alpha=16, disable_tqdm=True)
    base.update(kw)
    return base


def test_each_loss_logs_its_own_divergence(tiny, tmp_path):
    """Soft-label BCT (the forward KL, loss_type jsd with beta 0) logs "jsd", not a reverse KL of nan."""
    import math

    model, tok = tiny
    args = OPCTConfig(**common(tmp_path, max_steps=1, logging_steps=1, loss_type="jsd", beta=0.0, rollouts="teacher",
                               temperature=0.0, num_samples=1, max_new_tokens=4))
    trainer = OPCTTrainer(add_lora(model, r=8, alpha=16), args, pairs_to_dataset(make_pairs(4)), processing_class=tok)
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["jsd"]) and logged["jsd"] >= 0 and "reverse_kl" not in logged


def test_teacher_scores_match_direct_forward(tiny):
    model, tok = tiny
    pairs = make_pairs(3)
    student = [render_prompt(tok, p.wrapped) for p in pairs]
    teacher = [render_prompt(tok, p.clean) for p in pairs]
    completions = [[5, 9, 11, tok.eos_token_id], [7, tok.eos_token_id], [3, 4, 5, 6, 8]]
    batch = build_scoring_batch(student, teacher, completions, tok.pad_token_id)
    mask = batch["completion_mask"]
    with torch.no_grad():
        logits = completion_logits(model, batch["teacher_ids"], batch["teacher_mask"], mask.shape[1])
        logp = torch.log_softmax(logits.float(), -1)
        for i, (prompt, comp) in enumerate(zip(teacher, completions)):
            direct = torch.log_softmax(model(torch.tensor([prompt + comp])).logits[0].float(), -1)
            for t, token in enumerate(comp):
                # the logit at prompt position len(prompt)-1+t predicts completion token t
                expected = direct[len(prompt) - 1 + t, token]
                assert mask[i, t] == 1
                assert torch.allclose(logp[i, t, token], expected, atol=1e-4)
            assert mask[i, len(comp):].sum() == 0


def test_final_eos_kept_when_pad_is_eos(tiny):
    _, tok = tiny
    eos = tok.eos_token_id
    assert tok.pad_token_id == eos
    ids, finished = trim_completion([5, 6, eos, eos, eos], [eos])
    assert ids == [5, 6, eos] and finished
    batch = build_scoring_batch([[1, 2]], [[1, 3]], [ids], tok.pad_token_id)
    assert batch["completion_mask"].tolist() == [[1, 1, 1]]  # the EOS counts, though it equals pad
    ids, finished = trim_completion([5, 6, 7], [eos])
    assert ids == [5, 6, 7] and not finished


def test_left_padded_batch_generates_like_single(tiny):
    model, tok = tiny
    prompts = [render_prompt(tok, p.wrapped) for p in make_pairs(3)]
    prompts[1] = prompts[1][:-6] + prompts[1][-5:]  # lengths differ, so the batch is padded
    batched = generate_ids(model, tok, prompts, max_new_tokens=6, bf16=False)
    for prompt, got in zip(prompts, batched):
        single = generate_ids(model, tok, [prompt], max_new_tokens=6, bf16=False)[0]
        assert isinstance(got, Completion)
        assert got.token_ids == single.token_ids


def test_opct_reduces_reverse_kl(tiny, tmp_path):
    model, tok = tiny
    pairs = make_pairs(8)
    student = add_lora(model, r=8, alpha=16)
    before = consistency_kl(student, tok, pairs, max_new_tokens=12, seed=1)
    # The sampled estimator is noisy: 8 samples per prompt keep 30 steps enough.
    args = OPCTConfig(**common(tmp_path, max_steps=30, learning_rate=1e-2, num_samples=8, max_new_tokens=12))
    OPCTTrainer(student, args, pairs_to_dataset(pairs), processing_class=tok).train()
    after = consistency_kl(student, tok, pairs, max_new_tokens=12, seed=1)
    assert before > 0.05, before
    assert after < 0.6 * before, (before, after)


def test_full_vocab_opct_reduces_reverse_kl(tiny, tmp_path):
    model, tok = tiny
    pairs = make_pairs(8)
    student = add_lora(model, r=8, alpha=16)
    before = consistency_kl(student, tok, pairs, max_new_tokens=12, seed=1)
    args = OPCTConfig(**common(tmp_path, max_steps=15, learning_rate=1e-2, num_samples=2, max_new_tokens=12,
                               loss_type="full"))
    OPCTTrainer(student, args, pairs_to_dataset(pairs), processing_class=tok).train()
    assert consistency_kl(student, tok, pairs, max_new_tokens=12, seed=1) < 0.5 * before


def mcq_pairs(n=8):
    options = "\n(A) 1\n(B) 2\n(C) 3\n(D) 4\n#### "
    return [
        ContrastivePair(
            id=f"m{i}", axis="sycophancy", target="B",
            clean=[{"role": "user", "content": f"What is {i} + 1? Think about it.{options}"}],
            wrapped=[{"role": "user", "content": f"I think the answer is D. What is {i} + 1?{options}"}],
        )
        for i in range(n)
    ]


def test_letter_kl_reads_the_letter_after_each_response(tiny, tmp_path):
    from opct.chat import render_prompt as render

    model, tok = tiny
    pairs = mcq_pairs(2)
    args = OPCTConfig(**common(tmp_path, max_steps=1, num_samples=2, max_new_tokens=6, loss_type="letter",
                               base_dtype="float32"))  # fp32 all through, so the check can be exact
    trainer = OPCTTrainer(model, args, pairs_to_dataset(pairs), processing_class=tok)
    eos = tok.eos_token_id
    completions = [Completion("", [11, 12, eos], True), Completion("", [13], False),
                   Completion("", [14, 15, 16, 17], False), Completion("", [18, eos], True)]
    inputs = {"student_prompts": [render(tok, p.wrapped) for p in pairs],
              "teacher_prompts": [render(tok, p.clean) for p in pairs], **trainer.letter_batch(completions)}
    student, teacher = trainer.letter_logits(trainer.model, inputs)
    context, letters = trainer.letter_tokens
    for i, c in enumerate(completions):
        head = [t for t in c.token_ids if t != eos]  # the EOS is dropped before the answer prefix
        for prompt, got, adapter in ((pairs[i // 2].wrapped, student, True), (pairs[i // 2].clean, teacher, False)):
            ids = torch.tensor([render(tok, prompt) + head + context], device=trainer.model.device)
            with torch.no_grad():
                if adapter:
                    want = trainer.model(input_ids=ids).logits[0, -1, letters]
                else:
                    with trainer.model.disable_adapter():
                        want = trainer.model(input_ids=ids).logits[0, -1, letters]
            assert torch.allclose(got[i].float(), want.float(), atol=1e-4), (i, adapter)


def test_letter_kl_trains_end_to_end(tiny, tmp_path):
    model, tok = tiny
    args = OPCTConfig(**common(tmp_path, max_steps=2, learning_rate=1e-2, num_samples=2, max_new_tokens=4,
                               loss_type="letter"))
    trainer = OPCTTrainer(model, args, pairs_to_dataset(mcq_pairs(8)), processing_class=tok)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    kls = [h["letter_kl"] for h in trainer.state.log_history if "letter_kl" in h]
    assert len(kls) == 2 and all(k > 0 for k in kls)  # wrapped and clean prompts disagree on the letter
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)


def first_last(trainer, key):
    logs = [h[key] for h in trainer.state.log_history if key in h]
    return sum(logs[:3]) / 3, sum(logs[-3:]) / 3


def test_act_reduces_distance(tiny, tmp_path):
    model, tok = tiny
    trainer = ACTTrainer(model, ACTConfig(**common(tmp_path, max_steps=30, learning_rate=3e-3)),
                         pairs_to_dataset(make_pairs(8)), processing_class=tok)
    trainer.train()
    first, last = first_last(trainer, "act_l2")
    assert last < 0.5 * first, (first, last)


def test_act_loss_in_length_groups_equals_one_padded_batch(tiny, tmp_path):
    """ACT runs the rows of a micro-batch in groups of similar wrapped length; the loss and the
    adapter's gradients are those of one padded batch."""
    from opct import losses
    from opct.prefix import length_groups

    model, tok = tiny
    pairs = [ContrastivePair(id=f"p{i}", axis="test", clean=[{"role": "user", "content": f"What is {i} + {i}?"}],
                             wrapped=[{"role": "user", "content": "I think it is B. " * (1 + 6 * i) + f"What is {i} + {i}?"}])
             for i in range(4)]
    # fp32 on every host: the equality is of grouping, not of bf16 rounding (bf16=True makes the base bf16
    # where bf16 is native, and this test calls compute_loss outside the Trainer's autocast)
    trainer = ACTTrainer(model, ACTConfig(**common(tmp_path, max_steps=1, bf16=False)), pairs_to_dataset(pairs),
                         processing_class=tok)
    batch = trainer.prepare_batch([trainer.train_dataset[i] for i in range(4)], 0)
    assert len(length_groups(batch["wrapped_mask"].sum(1).tolist())) > 1
    n = batch["num_items"]

    def loss_and_grads(compute):
        trainer.model.zero_grad()
        loss = compute()
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in trainer.model.named_parameters() if p.grad is not None}

    def one_batch():
        width = batch["suffix_mask"].shape[1]
        wrapped = trainer.hidden_states(trainer.model, batch["wrapped_ids"], batch["wrapped_mask"], width)
        with torch.no_grad():
            clean = trainer.hidden_states(trainer.model, batch["clean_ids"], batch["clean_mask"], width)
        return losses.act_l2_loss(wrapped, clean, batch["suffix_mask"], n)[0] * trainer.loss_scale()

    grouped, grouped_grads = loss_and_grads(lambda: trainer.compute_loss(trainer.model, batch, num_items_in_batch=n))
    padded, padded_grads = loss_and_grads(one_batch)
    assert torch.allclose(grouped, padded, rtol=1e-5, atol=1e-7), (grouped, padded)
    assert padded_grads.keys() == grouped_grads.keys() and padded_grads
    for name in padded_grads:
        assert torch.allclose(grouped_grads[name], padded_grads[name], rtol=1e-4, atol=1e-6), name


def test_sft_reduces_cross_entropy(tiny, tmp_path):
    model, tok = tiny
    args = BCTConfig(**common(tmp_path, max_steps=30, learning_rate=3e-3, target_max_new_tokens=10))
    trainer = BCTTrainer(model, args, pairs_to_dataset(make_pairs(8)), processing_class=tok)
    targets = [json.loads(l) for l in (tmp_path / "run" / "bct_targets.jsonl").read_text().splitlines()]
    assert len(targets) == 8  # generated once from the clean prompts, cached beside the run
    trainer.train()
    first, last = first_last(trainer, "loss")
    assert last < 0.5 * first, (first, last)


def test_sft_loss_projects_only_answer_positions_with_the_same_loss_and_gradients(tiny, tmp_path, monkeypatch):
    """On CPU TRL's fused SFT head would project every position; BCTTrainer's projects only the
    labelled ones, and the loss and the adapter's gradients stay those of TRL's own path."""
    import trl.trainer.utils as trl_utils
    from trl.trainer.sft_trainer import SFTTrainer

    model, tok = tiny
    trainer = BCTTrainer(model, BCTConfig(**common(tmp_path, max_steps=1, target_max_new_tokens=6)),
                         pairs_to_dataset(make_pairs(4)), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    projected = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *a: projected.append(hidden.shape[0]) or apply(hidden, *a))

    def loss_and_grads(compute):
        trainer.model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as in training (bf16 base)
            loss = compute(trainer, trainer.model, dict(batch))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad]

    ours, our_grads = loss_and_grads(BCTTrainer.compute_loss)
    trls, trl_grads = loss_and_grads(SFTTrainer.compute_loss)
    assert projected == [labelled, batch["labels"][:, 1:].numel()] and labelled < projected[1]
    torch.testing.assert_close(ours, trls)
    for a, b in zip(our_grads, trl_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    assert trl_utils._use_triton(torch.device("cpu")) is False  # TRL's switch is put back


def test_sft_targets_start_from_the_prefix_and_unparsed_ones_are_counted(tiny, tmp_path):
    from dataclasses import replace

    model, tok = tiny
    pairs = [replace(p, axis="sycophancy", target="AB"[i % 2]) for i, p in enumerate(make_pairs(6))]
    free = BCTTrainer(model, BCTConfig(**common(tmp_path, max_steps=1, target_max_new_tokens=6)),
                      pairs_to_dataset(pairs), processing_class=tok)
    # The tiny model's free answers are gibberish: no "#### X" in them.
    assert free.target_report["targets"] == 6 and free.target_report["unparsed"] == 6
    prefixed = BCTTrainer(model, BCTConfig(**common(tmp_path, output_dir=str(tmp_path / "p"), max_steps=1,
                                                    target_max_new_tokens=6, target_prefix="#### ")),
                          pairs_to_dataset(pairs), processing_class=tok)
    rows = [json.loads(line) for line in (tmp_path / "p" / "bct_targets.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["completion"].startswith("####") for r in rows)
    assert prefixed.target_report["targets"] == 6 and len(prefixed.train_dataset) == 6

    # Leaving out the unparsed ones, by hand-made targets.
    targets = {"p0": "#### A\nsure", "p1": "I cannot say.", "p2": "#### B", "p3": "no idea", "p4": "#### C",
               "p5": "#### B"}
    report, kept = check_answer_targets(pairs, targets, drop=True)
    # p1, p3: no letter; p2 and p4 answer B and C where the pair's target is A.
    assert report == {"targets": 6, "unparsed": 2, "unparsed_share": 0.3333, "answer_not_target": 2, "dropped": 2}
    assert [p.id for p in kept] == ["p0", "p2", "p4", "p5"]
    assert check_answer_targets(make_pairs(2), {"p0": "x", "p1": "y"}, drop=True) == (None, make_pairs(2))


def test_targets_are_made_with_a_fresh_adapter_disabled_and_come_out_the_same(tiny, tmp_path):
    """A fresh LoRA adapter adds exactly zero: targets are made with it disabled (no LoRA matmuls)
    and equal those made through it. An adapter that already holds weights stays on."""
    from opct.trainers.base import initial_model

    model, tok = tiny
    calls = []

    def count(module, args, out):
        calls.append(1)

    def targets(m, out):
        args = BCTConfig(**common(tmp_path, output_dir=str(tmp_path / out), max_steps=1, target_max_new_tokens=6))
        BCTTrainer(m, args, pairs_to_dataset(make_pairs(4)), processing_class=tok)
        return [json.loads(line)["completion"] for line in (tmp_path / out / "bct_targets.jsonl").read_text().splitlines()]

    fresh = add_lora(copy.deepcopy(model), r=8, alpha=16)
    hooks = [mod.register_forward_hook(count) for name, mod in fresh.named_modules() if name.endswith("lora_A.default")]
    made = targets(fresh, "fresh")
    assert not calls  # the adapter was off while the targets were made
    with torch.no_grad():  # the same targets when made through the (zero) adapter
        with_adapter = generate_ids(fresh, tok, [render_prompt(tok, p.clean) for p in make_pairs(4)], max_new_tokens=6)
    assert calls and made == [c.text for c in with_adapter]

    for h in hooks:
        h.remove()
    trained = tiny_trained_lora(tok)
    hooks = [mod.register_forward_hook(count) for name, mod in trained.named_modules() if name.endswith("lora_A.default")]
    calls.clear()
    with initial_model(trained):
        trained(input_ids=torch.tensor([[1, 2, 3]]))
    assert calls  # a trained adapter is part of the model the labels come from


def test_sft_mixes_in_instructions_answered_plainly(tiny, tmp_path):
    from dataclasses import replace

    from opct.data.instructions import SENSITIVE, instruction_prompts

    model, tok = tiny
    pairs = [replace(p, axis="sycophancy", target="A") for p in make_pairs(6)]
    trainer = BCTTrainer(model, BCTConfig(**common(tmp_path, max_steps=1, target_max_new_tokens=4, target_prefix="#### ",
                                                   mix_fraction=0.5)), pairs_to_dataset(pairs), processing_class=tok)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "bct_targets.jsonl").read_text().splitlines())}
    mixed = [r for i, r in rows.items() if i.startswith("mix-")]
    assert len(trainer.train_dataset) == 12 and len(mixed) == 6  # half the rows
    assert all(not r["completion"].startswith("####") for r in mixed)  # the axis's prefix is not theirs
    assert all(rows[p.id]["completion"].startswith("####") for p in pairs)
    prompts = instruction_prompts(6, seed=0)
    assert sum(p in SENSITIVE for p in prompts) == 3  # both kinds, interleaved
    assert trainer.target_report["targets"] == 6  # the answer-letter check counts the axis's pairs only
    with pytest.raises(ValueError, match="mix_fraction"):
        BCTConfig(**common(tmp_path, mix_fraction=1.0))


class Kill(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise KeyboardInterrupt


def adapter_state(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["opct", "opct-one-micro-batch", "act"])
def test_kill_and_resume_matches_uninterrupted(tmp_path, method):
    """opct-one-micro-batch: one micro-batch per step, where the student's prompt forward is shared
    with sampling (`share_prompt_forward`); the others accumulate two."""
    tok = build_tiny_tokenizer()
    cfg_cls, trainer_cls = (ACTConfig, ACTTrainer) if method == "act" else (OPCTConfig, OPCTTrainer)
    extra = {"num_samples": 2, "max_new_tokens": 6} if method.startswith("opct") else {}
    batch, accumulate = (4, 1) if method == "opct-one-micro-batch" else (2, 2)
    pairs = pairs_to_dataset(make_pairs(12))

    def run(out, resume=None, callbacks=None):
        args = cfg_cls(**common(tmp_path, output_dir=str(tmp_path / out), max_steps=6, learning_rate=1e-3,
                                per_device_train_batch_size=batch, gradient_accumulation_steps=accumulate, save_steps=3,
                                **extra))
        trainer = trainer_cls(build_tiny_model(tok), args, pairs, processing_class=tok, callbacks=callbacks)
        if method.startswith("opct"):
            assert trainer.shares_prompt_forward() == (method == "opct-one-micro-batch")
        initial = adapter_state(trainer)
        trainer.train(resume_from_checkpoint=resume)
        return initial, adapter_state(trainer)

    initial, straight = run("a")
    assert any(not torch.equal(initial[n], straight[n]) for n in straight)  # training moved the adapter
    with pytest.raises(KeyboardInterrupt):
        run("b", callbacks=[Kill(4)])  # dies after checkpoint-3 was written
    _, resumed = run("b", resume=str(tmp_path / "b" / "checkpoint-3"))
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.allclose(straight[name], resumed[name], atol=1e-6), name


def test_teacher_rollouts_are_the_teachers_clean_answers(tiny, tmp_path):
    """rollouts="teacher" (soft-label BCT with the forward KL): the scored tokens are the frozen
    model's greedy answers to the clean prompts, not the student's samples."""
    model, tok = tiny
    pairs = make_pairs(4)
    expected = [c.token_ids for c in generate_ids(model, tok, [render_prompt(tok, p.clean) for p in pairs],
                                                  max_new_tokens=6, temperature=0.0)]
    args = OPCTConfig(**common(tmp_path, max_steps=3, learning_rate=3e-3, num_samples=1, max_new_tokens=6,
                               temperature=0.0, rollouts="teacher", loss_type="jsd", beta=0.0))
    trainer = OPCTTrainer(model, args, pairs_to_dataset(pairs), processing_class=tok)
    assert trainer.sampler is None  # no student sampling copy is made
    batch = trainer.prepare_batch([p.to_dict() for p in pairs], 0)
    got = [row[m.bool()].tolist() for row, m in zip(batch["completion_ids"], batch["completion_mask"])]
    assert got == expected
    trainer.train()
    with pytest.raises(ValueError, match="rollouts"):
        OPCTConfig(**common(tmp_path, rollouts="nobody"))


def test_training_keeps_autocast_without_fp32_logits(tiny, tmp_path, monkeypatch):
    """accelerate's fp32 cast of every output is dropped; its bf16 autocast stays on the model."""
    monkeypatch.setenv("OPCT_BF16", "1")  # bf16 even where it is not native
    model, tok = tiny
    student = add_lora(model, r=8, alpha=16)
    args = OPCTConfig(**common(tmp_path, max_steps=1, num_samples=2, max_new_tokens=4))
    OPCTTrainer(student, args, pairs_to_dataset(make_pairs(4)), processing_class=tok).train()
    assert next(student.get_base_model().parameters()).dtype == torch.bfloat16  # the frozen base
    ids = torch.tensor([render_prompt(tok, make_pairs(1)[0].clean)], device=student.device)
    assert student(input_ids=ids).logits.dtype == torch.bfloat16  # autocast, and no cast to fp32 after it


def test_attention_kernel_switches_and_restores(tiny):
    from opct.models import attention_kernel

    model, tok = tiny
    ids = torch.tensor([render_prompt(tok, p.clean) for p in make_pairs(2)])
    own = model.config._attn_implementation
    reference = model(input_ids=ids).logits
    with attention_kernel(model, "eager" if own != "eager" else "sdpa"):
        assert model.config._attn_implementation != own
        other = model(input_ids=ids).logits
    assert model.config._attn_implementation == own
    torch.testing.assert_close(other, reference, atol=1e-4, rtol=1e-4)


def test_auto_attention_is_eager_only_within_its_memory_bound(tiny, tmp_path):
    model, tok = tiny
    pairs = make_pairs(4)
    trainer = OPCTTrainer(add_lora(model, r=8, alpha=16), OPCTConfig(**common(tmp_path, num_samples=2, max_new_tokens=4)),
                          pairs_to_dataset(pairs), processing_class=tok)
    inputs = trainer.prepare_batch(list(pairs_to_dataset(pairs)), 0)
    assert inputs["attention"] == "eager"  # chosen before sampling: the shared prompt forward runs under it
    shape = (trainer.model, inputs["student_prompts"], inputs["teacher_prompts"], inputs["completion_ids"].shape[1] + 1)
    assert trainer.attention_for(*shape) == "eager"
    trainer.args.eager_attention_mb = 1e-3
    assert trainer.attention_for(*shape) == "sdpa"
    trainer.args.train_attention = "eager"
    assert trainer.attention_for(*shape) == "eager"


def test_shared_prompt_forward_samples_and_learns_as_the_separate_one(tmp_path):
    """share_prompt_forward: the student's wrapped-prompt forward, run once before sampling, serves
    as the sampling prefill and under the completions in the loss. Same samples, same loss and same
    gradients as sampling with its own prefill (fp32 throughout, so the check can be tight), also
    when sampling goes one prompt per `generate` call."""
    tok = build_tiny_tokenizer()
    rows = [p.to_dict() for p in make_pairs(3)]
    got = {}
    for share in (False, True):
        torch.manual_seed(0)
        student = tiny_trained_lora(tok)
        args = OPCTConfig(**common(tmp_path, max_steps=1, num_samples=3, max_new_tokens=6, bf16=False,
                                   generation_bf16=False, generation_batch_size=3, share_prompt_forward=share))
        trainer = OPCTTrainer(student, args, pairs_to_dataset(make_pairs(3)), processing_class=tok)
        assert trainer.shares_prompt_forward() == share
        batch = trainer.prepare_batch(rows, 0)
        assert ("student_heads" in batch) == share
        loss = trainer.compute_loss(trainer.model, batch, num_items_in_batch=batch["num_items"])
        loss.backward()
        grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
        got[share] = (batch["completion_ids"], loss.detach(), grads)
    (ids0, loss0, grads0), (ids1, loss1, grads1) = got[False], got[True]
    assert torch.equal(ids0, ids1)
    assert torch.allclose(loss0, loss1, atol=1e-6) and loss0.abs() > 0
    assert grads0.keys() == grads1.keys() and any("lora_A" in n for n in grads0)
    for name in grads0:
        assert torch.allclose(grads0[name], grads1[name], atol=1e-6, rtol=1e-4), name


def test_shared_prompt_forward_only_where_its_graph_can_wait(tiny, tmp_path):
    """The prompt forward's graph waits from sampling to the backward: never for a window of several
    micro-batches, nor under LoRA dropout (sampling must see the KV without it), nor without the
    sampling copy."""
    model, tok = tiny
    for extra in ({"gradient_accumulation_steps": 2}, {"lora_dropout": 0.1}, {"sampling_copy": False}):
        args = OPCTConfig(**common(tmp_path, max_steps=1, num_samples=2, max_new_tokens=4, **extra))
        trainer = OPCTTrainer(copy.deepcopy(model), args, pairs_to_dataset(make_pairs(2)), processing_class=tok)
        assert not trainer.shares_prompt_forward(), extra
        assert "student_heads" not in trainer.prepare_batch([p.to_dict() for p in make_pairs(2)], 0)


def test_learning_curve_points_double_below_every_then_follow_it():
    from opct.trainers.base import LearningCurveCallback

    def due(every, early, max_steps):
        cb = LearningCurveCallback(lambda model: {}, every, early=early)
        return [s for s in range(1, max_steps + 1) if cb.due(s, max_steps)]

    assert due(8, True, 16) == [1, 2, 4, 8, 16]
    assert due(8, False, 16) == [8, 16]
    assert due(4, True, 10) == [1, 2, 4, 8, 10]
    assert due(1, True, 3) == [1, 2, 3]


def test_learning_curve_starts_when_the_trainer_is_built(tiny_model_dir, tmp_path):
    """SFT makes its targets while its trainer is built; on a time axis its step-0 point comes after that."""
    from opct.data import write_pairs
    from opct.trainers.base import LearningCurveCallback
    from opct.trainers.run import train

    write_pairs(make_pairs(4), tmp_path / "pairs.jsonl")
    curve = LearningCurveCallback(lambda model: {"n": 1.0}, every=1)
    summary = train("sft", tiny_model_dir, str(tmp_path / "pairs.jsonl"), str(tmp_path / "run"),
                    {"max_steps": 1, "per_device_train_batch_size": 2, "target_max_new_tokens": 4, "lora_r": 4,
                     "lora_alpha": 8, "disable_tqdm": True}, callbacks=[curve])
    points = [json.loads(line) for line in (tmp_path / "run" / "curve.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [0, 1]
    assert points[0]["seconds"] == pytest.approx(curve.setup_seconds, abs=0.01) and curve.setup_seconds > 0
    assert summary["setup_seconds"] == round(curve.setup_seconds, 1)


def test_summary_keeps_curve_measurements_apart(tiny_model_dir, tmp_path):
    """Measuring curve points is not the method's cost: the summary reports it as `curve_seconds`."""
    import time

    from opct.data import write_pairs
    from opct.trainers.base import LearningCurveCallback
    from opct.trainers.run import train

    def slow_measure(model):
        time.sleep(0.5)
        return {"n": 1.0}

    write_pairs(make_pairs(4), tmp_path / "pairs.jsonl")
    curve = LearningCurveCallback(slow_measure, every=1)
    summary = train("sft", tiny_model_dir, str(tmp_path / "pairs.jsonl"), str(tmp_path / "run"),
                    {"max_steps": 2, "per_device_train_batch_size": 2, "target_max_new_tokens": 4, "lora_r": 4,
                     "lora_alpha": 8, "disable_tqdm": True}, callbacks=[curve])
    assert 1.5 <= summary["curve_seconds"] < summary["seconds"]  # three points (steps 0, 1, 2) of 0.5 s each
    points = [json.loads(line) for line in (tmp_path / "run" / "curve.jsonl").read_text().splitlines()]
    assert points[-1]["seconds"] <= summary["seconds"] - summary["curve_seconds"] + 0.2  # the rest: saving
