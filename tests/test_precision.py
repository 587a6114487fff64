"""opct.precision: bf16 only where it is native; OPCT_BF16 overrides; fp32 runs end to end without it."""

import pytest
import torch
from conftest import build_tiny_model, build_tiny_tokenizer

from opct.errors import UserError
from opct.precision import bf16_is_fast, use_bf16


def test_the_environment_overrides_the_hardware(monkeypatch):
    monkeypatch.setenv("OPCT_BF16", "0")
    assert not bf16_is_fast("cpu") and not use_bf16(True, "cpu")
    monkeypatch.setenv("OPCT_BF16", "1")
    assert bf16_is_fast("cpu") and use_bf16(True, "cpu") and not use_bf16(False, "cpu")
    monkeypatch.setenv("OPCT_BF16", "yes")
    with pytest.raises(UserError, match="OPCT_BF16 must be 0 or 1"):
        bf16_is_fast("cpu")


def test_a_model_with_bf16_weights_always_runs_under_autocast(monkeypatch):
    monkeypatch.setenv("OPCT_BF16", "0")
    model = build_tiny_model(build_tiny_tokenizer())
    assert not use_bf16(True, "cpu", model)
    model.model.layers[0].mlp.down_proj.to(torch.bfloat16)  # a bf16 frozen base beside fp32 parts
    assert use_bf16(False, "cpu", model)


def test_without_native_bf16_training_and_decoding_stay_in_fp32(monkeypatch, tmp_path):
    from opct.generation import autocast_context, generate_ids
    from opct.study import host_speed
    from opct.trainers import OPCTConfig

    monkeypatch.setenv("OPCT_BF16", "0")
    args = OPCTConfig(output_dir=str(tmp_path))  # bf16 is on by default: resolved off here
    assert not args.bf16 and args.frozen_dtype() == torch.float32
    with autocast_context("cpu"):
        assert not torch.is_autocast_enabled("cpu")
    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(tok)
    prompts = [tok("hello there, how are you")["input_ids"]]
    fp32 = generate_ids(model, tok, prompts, max_new_tokens=6, bf16=False)[0].token_ids
    assert generate_ids(model, tok, prompts, max_new_tokens=6)[0].token_ids == fp32  # the default asks bf16
    assert host_speed(size=128, repeats=1)["dtype"] == "float32"
    monkeypatch.setenv("OPCT_BF16", "1")
    assert OPCTConfig(output_dir=str(tmp_path)).bf16 and host_speed(size=128, repeats=1)["dtype"] == "bfloat16"


def test_an_opct_trainer_without_native_bf16_keeps_its_base_and_sampling_copy_in_fp32(monkeypatch, tmp_path):
    from opct.data import ContrastivePair, pairs_to_dataset
    from opct.trainers import OPCTConfig, OPCTTrainer

    tok = build_tiny_tokenizer()
    pairs = [ContrastivePair(id="p0", axis="test", clean=[{"role": "user", "content": "What is 2 + 2?"}],
                             wrapped=[{"role": "user", "content": "I think it is 5. What is 2 + 2?"}])]
    for forced, dtype in (("0", torch.float32), ("1", torch.bfloat16)):
        monkeypatch.setenv("OPCT_BF16", forced)
        args = OPCTConfig(output_dir=str(tmp_path / forced), per_device_train_batch_size=1, lora_r=4, lora_alpha=8,
                          max_steps=1, max_new_tokens=4, disable_tqdm=True)
        trainer = OPCTTrainer(build_tiny_model(tok), args, pairs_to_dataset(pairs), processing_class=tok)
        frozen = {p.dtype for n, p in trainer.model.named_parameters() if "lora_" not in n}
        assert frozen == {dtype} and {p.dtype for p in trainer.sampler.model.parameters()} == {dtype}
        trainer.train()
