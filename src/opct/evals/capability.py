"""Capability evals: does consistency training cost general ability?

* `mmlu_accuracy`: held-out MMLU subjects, scored by the next-token letter distribution;
* math (`opct.evals.math`): generated word problems, and GSM8K / MATH-500 from a file or the hub;
* instruction following (`opct.evals.instructions`): code-verified format constraints;
* `kl_from_base`: drift, the mean per-token KL(trained || base) on the trained model's own
  greedy answers to neutral prompts;
* `over_refusal_rate`: the refusal rate on benign prompts that look harmful (the jailbreak axis's
  over-refusal set), judged by the offline refusal classifier.

`run_capability_suite` runs them all; every benchmark reports a `summarize` dict
{"value", "ci_low", "ci_high", "n"}; one that cannot run reports n = 0 and a "skipped" reason.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from opct.chat import pad_id, position_ids_from_mask, render_prompt
from opct.defaults import DECODE_BATCH
from opct.evals.stats import summarize

BENCHMARKS = ("mmlu_accuracy", "math_accuracy", "gsm8k_accuracy", "math500_accuracy", "ifeval_accuracy", "kl_from_base",
              "over_refusal_rate")

MMLU_INSTRUCTION = 'Answer in the form "#### <letter>" with the letter (A, B, C or D) of the correct option.'

# per-benchmark sizes (None: the whole set); `limit` caps each of them
SUITES: dict[str, dict[str, Any]] = {
    "quick": {"mmlu": 100, "math": 30, "math_levels": (1, 2), "ifeval": 20, "kl": 32, "gsm8k": 50, "math500": 50,
              "benign": 24, "hub": False, "max_new_tokens": 256, "kl_tokens": 64, "refusal_tokens": 48},
    "full": {"mmlu": 1000, "math": 150, "math_levels": (1, 2, 3), "ifeval": None, "kl": None, "gsm8k": None,
             "math500": None, "benign": None, "hub": True, "max_new_tokens": 512, "kl_tokens": 128,
             "refusal_tokens": 96},
}


def skipped(reason: str) -> dict[str, Any]:
    """The result of a benchmark that did not run."""
    return {"value": None, "ci_low": None, "ci_high": None, "n": 0, "skipped": reason}


def neutral_prompts() -> list[str]:
    """Benign everyday user prompts (explanations, recipes, code, writing), for drift measurements."""
    text = (files("opct") / "resources" / "neutral_prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- MMLU


def mmlu_conversation(item) -> list[dict[str, str]]:
    from opct.evals.mcq import mcq_prompt

    return [{"role": "user", "content": mcq_prompt(item.question, item.options, instruction=MMLU_INSTRUCTION)}]


def mmlu_accuracy(
    model, tokenizer, items: Sequence, batch_size: int = 8, progress: bool | str = False,
    return_records: bool = False,
) -> dict[str, Any]:
    """Accuracy on MCQ items (`MCQItem`: id, question, options, answer letter, subject): the argmax
    of the next-token letter distribution after ``"#### "``. A `summarize` dict plus "per_subject":
    {subject: {"value", "n"}}, and "records": per item {id, subject, answer, predicted, correct} when
    `return_records` (for comparisons paired over items)."""
    from opct.evals.mcq import letter_probs

    items = list(items)
    if not items:
        return {**summarize([]), "per_subject": {}}
    correct = [0.0] * len(items)
    predicted = [""] * len(items)
    by_count: dict[int, list[int]] = defaultdict(list)  # items grouped by their number of options
    for i, it in enumerate(items):
        by_count[len(it.options)].append(i)
    for k, idx in by_count.items():
        letters = "ABCDEFGHIJ"[:k]
        probs = letter_probs(model, tokenizer, [mmlu_conversation(items[i]) for i in idx], letters=letters,
                             answer_prefix="#### ", batch_size=batch_size, progress=progress)
        for i, row in zip(idx, probs.argmax(-1).tolist()):
            gold = items[i].answer
            gold = letters.index(gold) if isinstance(gold, str) else int(gold)
            correct[i], predicted[i] = float(row == gold), letters[row]
    result = summarize(correct)
    groups: dict[str, list[float]] = defaultdict(list)
    for it, c in zip(items, correct):
        groups[getattr(it, "subject", "") or "unknown"].append(c)
    result["per_subject"] = {s: {"value": sum(v) / len(v), "n": len(v)} for s, v in sorted(groups.items())}
    if return_records:
        result["records"] = [{"id": it.id, "subject": getattr(it, "subject", ""), "answer": it.answer,
                              "predicted": p, "correct": c} for it, p, c in zip(items, predicted, correct)]
    return result


# ---------------------------------------------------------------------------- drift from the base model


def _as_conversation(p: str | list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": "user", "content": p}] if isinstance(p, str) else p


def _completion_logits(model, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """fp32 logits of the last `keep` columns (computing the LM head only there when supported)."""
    device = next(model.parameters()).device
    kwargs = dict(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids_from_mask(mask).to(device))
    try:
        logits = model(**kwargs, logits_to_keep=keep).logits
    except TypeError:  # a model without `logits_to_keep`
        logits = model(**kwargs).logits
    return logits[:, -keep:, :].float()


@torch.no_grad()
def completion_kl(
    model, base_model, tokenizer, prompt_ids: Sequence[list[int]], completion_ids: Sequence[list[int]], batch_size: int = 8
) -> list[float]:
    """Per sequence: mean over completion tokens of the full-vocabulary KL(model || base) of the
    next-token distributions, both models conditioned on the same prompt + completion prefix.

    Rows are laid out with the prompt left-padded and the completion right-padded, so every
    completion starts at the same column and only the last `max completion` logits are needed."""
    out = [0.0] * len(prompt_ids)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]) + len(completion_ids[i]))  # less padding
    models = [model, base_model]
    states = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            ps, cs = [prompt_ids[i] for i in batch], [completion_ids[i] for i in batch]
            P, C = max(len(p) for p in ps), max(len(c) for c in cs)
            # input = prompt + completion[:-1]; column P-1+j predicts completion token j
            ids = torch.full((len(ps), P + C - 1), pad_id(tokenizer), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, (p, c) in enumerate(zip(ps, cs)):
                row = p + c[:-1]
                ids[r, P - len(p) : P - len(p) + len(row)] = torch.tensor(row, dtype=torch.long)
                mask[r, P - len(p) : P - len(p) + len(row)] = 1
            logits_m = _completion_logits(model, ids, mask, C)
            logits_b = _completion_logits(base_model, ids, mask, C).to(logits_m.device)
            for r in range(len(ps)):  # one row at a time keeps the [C, vocab] temporaries small
                n = len(cs[r])
                lp = torch.log_softmax(logits_m[r, :n], dim=-1)
                lq = torch.log_softmax(logits_b[r, :n], dim=-1)
                kl = (lp.exp() * (lp - lq)).sum(-1).clamp(min=0.0)  # clamp fp rounding below 0
                out[batch[r]] = kl.mean().item()
            del logits_m, logits_b
    finally:
        for m, s in zip(models, states):
            m.train(s)
    return out


def kl_from_base(
    model,
    base_model,
    tokenizer,
    prompts: Sequence[str | list[dict[str, str]]] | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    progress: bool | str = False,
    decode_batch: int = DECODE_BATCH,
) -> dict[str, Any]:
    """Drift of `model` from `base_model` (same tokenizer): `model` answers each prompt greedily,
    then the mean per-token KL(model || base) over that answer's tokens is taken per prompt and
    summarized over prompts. Prompts default to `neutral_prompts()`. Adds "mean_tokens".
    `decode_batch` prompts per generate call, `batch_size` rows per scoring forward."""
    from opct.generation import generate

    convs = [_as_conversation(p) for p in (prompts if prompts is not None else neutral_prompts())]
    if not convs:
        return {**summarize([]), "mean_tokens": None}
    outs = generate(model, tokenizer, convs, max_new_tokens=max_new_tokens, temperature=0.0, batch_size=decode_batch,
                    progress=progress)
    prompt_ids, completion_ids = [], []
    for conv, o in zip(convs, outs):
        if o[0].token_ids:  # an empty completion has no tokens to score
            prompt_ids.append(render_prompt(tokenizer, conv))
            completion_ids.append(list(o[0].token_ids))
    values = completion_kl(model, base_model, tokenizer, prompt_ids, completion_ids, batch_size=batch_size)
    result = summarize(values)
    result["mean_tokens"] = sum(map(len, completion_ids)) / len(completion_ids) if completion_ids else None
    return result


class AdapterOff:
    """A PEFT model seen with its adapter disabled: the base model, without a second copy in memory.
    `switch`: the context that turns the adapter off (default: peft's `disable_adapter`)."""

    def __init__(self, peft_model, switch=None):
        self.model = peft_model
        self._off = switch or peft_model.disable_adapter

    @property
    def training(self) -> bool:
        return self.model.training

    def train(self, mode: bool = True):
        self.model.train(mode)

    def eval(self):
        self.model.eval()

    def parameters(self):
        return self.model.parameters()

    def __call__(self, *args, **kwargs):
        with self._off():
            return self.model(*args, **kwargs)


class MergedLoRA:
    """A trained LoRA model made fast to evaluate: the adapter merged into its base weights and peft's
    wrapper modules taken out of the forward (`model`, a plain transformers model: SmolLM2 decoded
    1.06x faster, same tokens; benchmarks/merged_lora_decoding.py), while `adapter_off()` puts the
    wrappers back, unmerges and disables the adapter for the base's view, then merges and unwraps
    again (peft's own `disable_adapter` unmerges and leaves the adapter unmerged)."""

    def __init__(self, peft_model):
        from peft.tuners.lora import LoraLayer

        peft_model.merge_adapter()
        self.peft = peft_model
        self.model = peft_model.get_base_model()
        self._layers = [(parent, name, child) for parent in self.model.modules()
                        for name, child in parent.named_children() if isinstance(child, LoraLayer)]
        self._wrap(False)

    def _wrap(self, wrapped: bool) -> None:
        for parent, name, layer in self._layers:
            setattr(parent, name, layer if wrapped else layer.base_layer)

    @contextmanager
    def adapter_off(self):
        self._wrap(True)
        self.peft.unmerge_adapter()
        try:
            with self.peft.disable_adapter():
                yield
        finally:
            self.peft.merge_adapter()
            self._wrap(False)


def load_with_base_view(spec: str):
    """(model, base): a trained model's adapter merged in place into its base, unwrapped for fast
    answers (`MergedLoRA`), and its base as the same weights with the adapter off, the KL reference,
    without a second copy of the base in memory."""
    from opct.models import load_model

    model, _ = load_model(spec, merge_adapter=False)
    merged = MergedLoRA(model)
    return merged.model, AdapterOff(model, merged.adapter_off)


def adapter_drift(model, tokenizer, prompts: Sequence[str | list[dict[str, str]]], max_new_tokens: int = 32,
                  batch_size: int = 8) -> float | None:
    """Mean KL(model || model without its adapter) over the model's greedy answers to `prompts`:
    the drift from the base during training, with no second model. None for a model without an adapter."""
    if not hasattr(model, "disable_adapter"):
        return None
    return kl_from_base(model, AdapterOff(model), tokenizer, prompts, max_new_tokens=max_new_tokens,
                        batch_size=batch_size)["value"]


# ---------------------------------------------------------------------------- the suite


def lookalike_over_refusal(model, tokenizer, n: int | None, *, max_new_tokens: int, batch_size: int = DECODE_BATCH,
                           progress: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, rows): the refusal rate on `n` of opct's benign look-alike prompts, spread over
    every prompt type (all of them when n is None), judged by the offline refusal classifier."""
    from opct.evals.over_refusal import evaluate_over_refusal, over_refusal_prompts, spread
    from opct.evals.refusal import EmbeddingRefusalJudge

    return evaluate_over_refusal(model, tokenizer, spread(over_refusal_prompts()[0], n), EmbeddingRefusalJudge(),
                                 max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)


def _cap(size: int | None, limit: int | None) -> int | None:
    if limit is None:
        return size
    return limit if size is None else min(size, limit)


def _benchmark_files(file: str | Path | Mapping[str, str | Path] | None) -> dict[str, Path]:
    """{"gsm8k" | "math500": path} from one JSONL file (its format decides) or a mapping."""
    from opct.evals.math import BenchmarkDataError, detect_benchmark_file

    if file is None:
        return {}
    if isinstance(file, Mapping):
        out = {}
        for key, path in file.items():
            name = key.removesuffix("_accuracy")
            if name not in ("gsm8k", "math500"):
                raise ValueError(f"benchmark files are for 'gsm8k' or 'math500', got {key!r}")
            out[name] = Path(path)
        return out
    path = Path(file)
    if not path.is_file():
        raise BenchmarkDataError(f"{path}: no such file")
    return {detect_benchmark_file(path): path}


def run_capability_suite(
    model,
    tokenizer,
    suite: str = "quick",
    base_model=None,
    file: str | Path | Mapping[str, str | Path] | None = None,
    limit: int | None = None,
    progress: bool = True,
    seed: int = 0,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    decode_batch: int = DECODE_BATCH,
) -> dict[str, dict[str, Any]]:
    """All capability benchmarks, keyed by `BENCHMARKS`.

    quick: 100 held-out MMLU questions, 30 generated math problems (levels 1-2), 20 instruction
    prompts, KL from `base_model` on 32 neutral prompts, and the refusal rate on 24 benign
    look-alike prompts; GSM8K / MATH-500 only from `file`.
    full: larger sets (all levels, all instruction, neutral and look-alike prompts) plus GSM8K /
    MATH-500 from `file` or the hub. `file` is one JSONL file (GSM8K or MATH-500, told apart by its fields) or
    {"gsm8k": path, "math500": path}; a malformed file raises, an unreachable hub is recorded as
    "skipped". `limit` caps every benchmark's size; `max_new_tokens` overrides generation lengths.
    `batch_size` rows per scoring forward (MMLU, KL), `decode_batch` per generate call.
    """
    from opct.evals.instructions import instruction_accuracy
    from opct.evals.math import BenchmarkUnavailable, generate_word_problems, load_gsm8k, load_math500, math_accuracy

    if suite not in SUITES:
        raise ValueError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")
    cfg = SUITES[suite]
    gen_tokens = max_new_tokens or cfg["max_new_tokens"]
    kl_tokens = max_new_tokens or cfg["kl_tokens"]
    results: dict[str, dict[str, Any]] = {}

    def bar(name: str) -> str | bool:
        return name if progress else False

    # data first: a bad file fails before any model time is spent
    bench_files = _benchmark_files(file)
    external: dict[str, Any] = {}
    loaders = {"gsm8k": load_gsm8k, "math500": load_math500}
    for name, loader in loaders.items():
        n = _cap(cfg[name], limit)
        if name in bench_files:
            external[name] = loader(bench_files[name], limit=n)
        elif not cfg["hub"]:
            external[name] = f"not in the {suite} suite without a file; pass a JSONL file or use suite='full'"
        else:
            try:
                external[name] = loader(None, limit=n)
            except BenchmarkUnavailable as e:
                external[name] = str(e)

    t = time.time()
    try:
        from opct.data.sycophancy import capability_items

        items = capability_items(limit=_cap(cfg["mmlu"], limit), seed=seed)
    except Exception as e:  # no offline MMLU copy and no hub: report instead of crashing
        results["mmlu_accuracy"] = skipped(f"MMLU unavailable: {type(e).__name__}: {e}")
    else:
        results["mmlu_accuracy"] = mmlu_accuracy(model, tokenizer, items, batch_size=batch_size, progress=bar("mmlu"))
        results["mmlu_accuracy"]["seconds"] = round(time.time() - t, 1)

    t = time.time()
    problems = generate_word_problems(_cap(cfg["math"], limit), seed=seed, level=cfg["math_levels"])
    res = math_accuracy(model, tokenizer, problems, max_new_tokens=gen_tokens, batch_size=decode_batch,
                        progress=bar("math"), return_records=True)
    by_level: dict[int, list[float]] = defaultdict(list)
    for p, rec in zip(problems, res.pop("records")):
        by_level[p.level].append(float(rec["correct"]))
    res["per_level"] = {lv: {"value": sum(v) / len(v), "n": len(v)} for lv, v in sorted(by_level.items())}
    res["seconds"] = round(time.time() - t, 1)
    results["math_accuracy"] = res

    for name in ("gsm8k", "math500"):
        key, data = f"{name}_accuracy", external[name]
        if isinstance(data, str):
            results[key] = skipped(data)
            continue
        t = time.time()
        results[key] = math_accuracy(model, tokenizer, data, max_new_tokens=gen_tokens, batch_size=decode_batch,
                                     progress=bar(name))
        results[key].update(source=str(bench_files.get(name, "hub")), seconds=round(time.time() - t, 1))

    t = time.time()
    results["ifeval_accuracy"] = instruction_accuracy(model, tokenizer, n=_cap(cfg["ifeval"], limit),
                                                      max_new_tokens=gen_tokens, batch_size=decode_batch,
                                                      progress=bar("instructions"))
    results["ifeval_accuracy"]["seconds"] = round(time.time() - t, 1)

    if base_model is None:
        results["kl_from_base"] = skipped("no base model given")
    else:
        t = time.time()
        prompts = neutral_prompts()[: _cap(cfg["kl"], limit)]
        results["kl_from_base"] = kl_from_base(model, base_model, tokenizer, prompts, max_new_tokens=kl_tokens,
                                               batch_size=batch_size, progress=bar("kl from base"))
        results["kl_from_base"]["seconds"] = round(time.time() - t, 1)

    t = time.time()
    refusal = lookalike_over_refusal(model, tokenizer, _cap(cfg["benign"], limit), batch_size=decode_batch,
                                     max_new_tokens=max_new_tokens or cfg["refusal_tokens"], progress=progress)[0]
    results["over_refusal_rate"] = {**refusal["over_refusal_rate"], "judge": refusal["judge"],
                                    "unparsed": refusal["unparsed"], "seconds": round(time.time() - t, 1)}
    return {k: results[k] for k in BENCHMARKS}
