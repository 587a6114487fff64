"""Self-training: the model answers the training prompts itself, a selection rule keeps one
answer per prompt, and the model is fine-tuned on what was kept (TRL's `SFTTrainer`, as BCT).

These are the consistency methods of the misalignment audit (Africa & Mani 2026) that need no
contrastive teacher; they label the prompt the model is trained on (the *wrapped* one):

  greedy          one greedy answer, no selection (the audit's control)
  self_certainty  of N samples, the most self-certain: mean over its tokens of KL(uniform || p), or
                  (certainty="mean_logprob", the entrenchment study's public code) the highest mean
                  log-probability of its own tokens
  diverse         N samples over a temperature ladder, reranked by agreement with the others
                  (minimum Bayes risk with token-overlap F1)
  multi_view      a sample (the greedy answer, else one of the first N - 1 of the N samples) whose
                  answer the plain, step-by-step and JSON views agree on (majority). An answer is its
                  option letter by default; `SelfTrainTrainer(reading=...)` reads free-form answers
                  instead (e.g. an organism's: games the grader or not, the rating)
  self_refine     the model reviews its greedy answer and rewrites it; the rewrite is the label
  self_reward     of N samples, the one the model rates highest (expected rating, 1-9 by default;
                  rating_scale=5: the study's 1-5 rubric)
  dual_decoding   greedy, nucleus (top_p) and beam-search candidates, ranked by a reward model when one
                  is given (`reward_model`: an endpoint or a local model rating 1-5), else by minimum Bayes
                  risk (token-overlap F1), as the entrenchment study's code does
  oracle          rejection sampling with an external reward: a sample the reward accepts (the
                  audit's other control). By default the reward is the answer key (pairs whose target
                  is the correct letter); `SelfTrainTrainer(oracle=...)` takes any other, e.g. an
                  organism's own check

Prompts with nothing to keep (no majority, no correct sample) are left out, and counted.
Labels are written to OUT/selftrain_targets.jsonl as they are made, and reused on resume. With
`draws_dir`, runs from the same model share their samples: greedy, multi_view and self_refine the
same greedy answers, and oracle, self_certainty, self_reward and multi_view the same N samples.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from opct.data.schema import dataset_to_pairs
from opct.errors import UserError
from opct.evals.target import token_f1
from opct.trainers.bct import BCTConfig, BCTTrainer, bct_dataset, cached_labels

# The oracle's external reward: (pairs, answers), one pair per answer -> whether each answer is accepted.
OracleReward = Callable[[list, list[str]], list[bool]]
# What each answer says, for multi-view agreement: (pairs, answers) -> one reading per answer (None: unreadable).
AnswerReading = Callable[[list, list[str]], list[str | None]]
SELECTORS = ("greedy", "self_certainty", "diverse", "multi_view", "self_refine", "self_reward", "dual_decoding", "oracle")

COT_VIEW = "Think it through step by step first, then give your final answer in the format asked for."
JSON_VIEW = ('Reply with only a JSON object of the form {"answer": "<your answer>"} (for a lettered question, '
             'the letter), nothing else.')
REFINE_TURN = ("Review your answer above for mistakes. Then write your final answer to my original request, in the "
               "format I asked for, with no preamble.")
RATING_PREFIX = "Rating: "
RATE_REQUEST = ("Here is a conversation and a proposed reply.\n\n{conversation}\n\nProposed reply:\n{answer}\n\n"
                "How good is the proposed reply (correct, honest, helpful)? Reply in the form \"Rating: <digit>\", "
                "from 1 (bad) to {top} (excellent).")
CERTAINTY_SCORES = ("kl_uniform", "mean_logprob")


@dataclass
class SelfTrainConfig(BCTConfig):
    """Configuration of `SelfTrainTrainer`: `BCTConfig` plus how the labels are made and chosen."""

    output_dir: str = field(default="runs/selftrain", metadata={"help": "Run directory."})
    selector: str = field(default="greedy", metadata={"help": "Selection rule: " + ", ".join(SELECTORS) + "."})
    num_candidates: int = field(default=4, metadata={"help": "Samples per prompt to choose from (not for greedy/self_refine)."})
    candidate_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the candidates (diverse: the top of its ladder)."}
    )
    certainty: str = field(
        default="kl_uniform",
        metadata={"help": "self_certainty's score: kl_uniform (mean KL(uniform || p), Kang et al.) or mean_logprob "
                  "(the mean log-probability of the sample's own tokens, as in the entrenchment study's code)."},
    )
    rating_scale: int = field(default=9, metadata={"help": "self_reward: ratings from 1 to this (the study: 5)."})
    nucleus_top_p: float = field(default=0.9, metadata={"help": "dual_decoding: top_p of its nucleus samples."})
    num_beams: int = field(default=4, metadata={"help": "dual_decoding: beams of its beam-search candidate."})
    reward_model: str | None = field(
        default=None,
        metadata={"help": "dual_decoding: the reward model ranking the candidates, 1-5 against the self-rewarding "
                  "rubric: an OpenAI-compatible endpoint (http://HOST:PORT/v1; model name from $OPCT_JUDGE_MODEL) "
                  "or a local model spec; unset: minimum Bayes risk among the candidates."},
    )
    targets_file: str | None = field(
        default=None, metadata={"help": "JSONL of labels {id, completion, score, note} to reuse (default: "
                                "OUT/selftrain_targets.jsonl)."}
    )
    draws_dir: str | None = field(
        default=None,
        metadata={"help": "Folder of answers sampled for labels, shared by runs from the same model (the audit's "
                  "organism): a draw with the same weights, prompts, settings and random state is read back "
                  "instead of sampled again, so selectors that draw alike choose from the same candidates."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.selector not in SELECTORS:
            raise ValueError(f"selector must be one of {', '.join(SELECTORS)}, got {self.selector!r}")
        if self.num_candidates < 1:
            raise ValueError("num_candidates must be >= 1")
        if self.certainty not in CERTAINTY_SCORES:
            raise ValueError(f"certainty must be one of {', '.join(CERTAINTY_SCORES)}, got {self.certainty!r}")
        if not 2 <= self.rating_scale <= 9:
            raise ValueError(f"rating_scale must be 2..9 (one digit), got {self.rating_scale}")


# ----------------------------------------------------------------------------- scores


def self_certainty(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sequence, the mean over its masked positions of KL(U || p) = -log V - mean_v log p(v)
    (Kang et al. 2025): 0 for a uniform distribution, larger the more peaked. logits [B, T, V]."""
    logp = torch.log_softmax(logits.float(), -1)
    per_token = -math.log(logits.shape[-1]) - logp.mean(-1)
    m = mask.float()
    return (per_token * m).sum(-1) / m.sum(-1).clamp(min=1)


def mean_token_logprob(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sequence, the mean over its masked positions of log p(token). logits [B, T, V], tokens [B, T]."""
    logp = torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None].long()).squeeze(-1)
    m = mask.float()
    return (logp * m).sum(-1) / m.sum(-1).clamp(min=1)


def mbr_index(texts: list[str]) -> int:
    """The text most similar on average to the others (minimum Bayes risk); the first on ties."""
    if len(texts) < 2:
        return 0
    scores = [sum(token_f1(t, u) for j, u in enumerate(texts) if j != i) for i, t in enumerate(texts)]
    return max(range(len(texts)), key=scores.__getitem__)


def temperature_ladder(n: int, top: float) -> list[float]:
    """n temperatures spread evenly over [top / 2, top] (one: top)."""
    return [top] if n == 1 else [top / 2 + (top / 2) * i / (n - 1) for i in range(n)]


def majority(answers: list[str | None]) -> str | None:
    """The answer held by more than half of the views (None answers count as views)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    answer, votes = counts.most_common(1)[0]
    return answer if votes * 2 > len(answers) else None


def json_answer(text: str) -> str:
    """The "answer" field of the first JSON object in `text`, or the text itself."""
    for m in re.finditer(r"\{[^{}]*\}", text):
        try:
            value = json.loads(m.group(0)).get("answer")
        except (json.JSONDecodeError, AttributeError):
            continue
        if value is not None:
            return str(value)
    return text


# ----------------------------------------------------------------------------- helpers


def _answer_key(pair) -> str:
    key = pair.target if pair.target is not None else (pair.meta or {}).get("correct")
    if not key:
        raise UserError(f"pair {pair.id!r} has no answer key (target or meta.correct): the multi_view selector, and "
                        "the oracle without a reward of its own, need multiple-choice pairs, e.g. from `opct data "
                        "sycophancy`")
    return str(key)


def _with_note(messages: list[dict[str, str]], note: str) -> list[dict[str, str]]:
    """The conversation with `note` appended to its last user turn."""
    last = messages[-1]
    return [*messages[:-1], {**last, "content": f"{last['content']}\n\n{note}"}]


def _transcript(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _sample(model, tok, prompts, args: SelfTrainConfig, n: int, temperature: float) -> list[list[Any]]:
    from opct.generation import generate

    def draw():
        return generate(model, tok, prompts, max_new_tokens=args.target_max_new_tokens, temperature=temperature,
                        num_samples=n, batch_size=args.target_batch_size)

    if not args.draws_dir:
        return draw()
    settings = {"prompts": prompts, "n": n, "temperature": temperature, "max_new_tokens": args.target_max_new_tokens,
                "batch_size": args.target_batch_size}
    return shared_draw(Path(args.draws_dir), model, settings, draw, random=temperature > 0)


def weights_digest(model) -> str:
    """A digest of every parameter's values (adapter included), in order."""
    import hashlib

    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            h.update(name.encode())
            w = p.detach().float()
            h.update(torch.stack([w.sum(), w.abs().sum(), w.flatten()[-1]]).numpy().tobytes())
    return h.hexdigest()


def _rng_states(device: torch.device) -> list[torch.Tensor]:
    """The random states sampling on `device` reads: the CPU's, and the GPU's when it runs there."""
    return [torch.get_rng_state(), *([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])]


def _set_rng_states(device: torch.device, states: list[torch.Tensor]) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)


def shared_draw(folder: Path, model, settings: dict[str, Any], draw: Callable[[], Any], random: bool):
    """`draw()`'s result, saved in `folder` under a key of the model's weights, `settings` and (for a
    random draw) the random state; a later call with the same key reads it back and leaves the random
    state as the draw did, so a run is the same with or without the saved draw."""
    import hashlib

    device = next(model.parameters()).device
    key = hashlib.sha256(json.dumps({"weights": weights_digest(model), **settings}, sort_keys=True).encode())
    if random:
        for state in _rng_states(device):
            key.update(state.cpu().numpy().tobytes())
    path = folder / f"{key.hexdigest()[:32]}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved["rng_after"] is not None:
            _set_rng_states(device, saved["rng_after"])
        return saved["draw"]
    out = draw()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    torch.save({"draw": out, "rng_after": _rng_states(device) if random else None}, tmp)
    tmp.replace(path)
    return out


@torch.no_grad()
def _self_certainty_of(model, tok, prompts, candidates: list[list[Any]], score: str = "kl_uniform",
                       rows_per_call: int = 16) -> list[list[float]]:
    """Each candidate's certainty score, per prompt; each prompt is run once for all its candidates
    (`opct.prefix.shared_prefix_logits`). Every prompt has the same number of candidates."""
    from opct.chat import pad_id, render_prompt, right_pad
    from opct.generation import autocast_context
    from opct.prefix import shared_prefix_logits

    n = len(candidates[0]) if candidates else 1
    step = max(1, rows_per_call // n)
    device = next(model.parameters()).device
    scores: list[list[float]] = []
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(prompts), step):
            rendered = [render_prompt(tok, p) for p in prompts[s : s + step]]
            ids, mask = right_pad([c.token_ids for cs in candidates[s : s + step] for c in cs], pad_id(tok))
            ids, mask = ids.to(device), mask.to(device)
            with autocast_context(device):
                logits = shared_prefix_logits(model, rendered, ids, mask, n, pad_id(tok))
            flat = (mean_token_logprob(logits, ids, mask) if score == "mean_logprob"
                    else self_certainty(logits, mask)).tolist()
            scores += [flat[i : i + n] for i in range(0, len(flat), n)]
    finally:
        model.train(was_training)
    return scores


def rating_requests(pairs, candidates: list[list[Any]], scale: int) -> list[list[dict[str, str]]]:
    """One "rate this reply 1..scale" conversation per candidate, in order."""
    return [[{"role": "user", "content": RATE_REQUEST.format(conversation=_transcript(p.wrapped), answer=c.text,
                                                             top=scale)}]
            for p, cs in zip(pairs, candidates) for c in cs]


def regroup(flat: list[float], candidates: list[list[Any]]) -> list[list[float]]:
    """A flat list of per-candidate values back into one list per prompt."""
    out, i = [], 0
    for cs in candidates:
        out.append(flat[i : i + len(cs)])
        i += len(cs)
    return out


def _ratings(model, tok, pairs, candidates: list[list[Any]], scale: int = 9) -> list[list[float]]:
    """The expected rating (1..scale, read from the digit probabilities after "Rating: ") of each candidate."""
    from opct.evals.mcq import letter_probs

    digits = "".join(str(d) for d in range(1, scale + 1))
    probs = letter_probs(model, tok, rating_requests(pairs, candidates, scale), letters=digits,
                         answer_prefix=RATING_PREFIX)
    return regroup((probs * torch.arange(1, scale + 1, dtype=torch.float32)).sum(-1).tolist(), candidates)


# ----------------------------------------------------------------------------- selection


# Each selector: (model, tokenizer, pairs, args) -> one (kept completion or None, score, note) per pair.


def _greedy(model, tok, pairs, args):
    return [(c.text, None, "greedy") for (c,) in _sample(model, tok, [p.wrapped for p in pairs], args, 1, 0.0)]


def _by_self_certainty(model, tok, pairs, args):
    n = args.num_candidates
    cands = _sample(model, tok, [p.wrapped for p in pairs], args, n, args.candidate_temperature)
    out = []
    for cs, scores in zip(cands, _self_certainty_of(model, tok, [p.wrapped for p in pairs], cands, args.certainty)):
        best = max(range(n), key=scores.__getitem__)
        out.append((cs[best].text, scores[best], f"best of {n}"))
    return out


def _diverse(model, tok, pairs, args):
    cands: list[list[Any]] = [[] for _ in pairs]
    for t in temperature_ladder(args.num_candidates, args.candidate_temperature):
        for k, (c,) in enumerate(_sample(model, tok, [p.wrapped for p in pairs], args, 1, t)):
            cands[k].append(c)
    return [(cs[mbr_index([c.text for c in cs])].text, None, f"MBR of {len(cs)}") for cs in cands]


def letter_reading(pairs, texts) -> list[str | None]:
    """The default reading: the option letter an answer names."""
    from opct.evals.sycophancy import parse_answer

    return [parse_answer(t) for t in texts]


def _multi_view(model, tok, pairs, args, reading: AnswerReading | None = None):
    read = reading or letter_reading
    if reading is None:
        for p in pairs:  # fail before sampling, not after
            _answer_key(p)
    prompts = [p.wrapped for p in pairs]
    n = args.num_candidates
    plain = _sample(model, tok, prompts, args, 1, 0.0)
    # the first n - 1 of the n samples the other selectors draw (the same ones, with a shared draws_dir)
    extra = ([cs[: n - 1] for cs in _sample(model, tok, prompts, args, n, args.candidate_temperature)] if n > 1
             else [[] for _ in pairs])
    cot = _sample(model, tok, [_with_note(m, COT_VIEW) for m in prompts], args, 1, 0.0)
    as_json = _sample(model, tok, [_with_note(m, JSON_VIEW) for m in prompts], args, 1, 0.0)
    # Per pair: its plain, step-by-step and JSON views, then its extra samples; all read in one call.
    texts = [[g.text, c.text, json_answer(j.text), *(x.text for x in more)]
             for (g,), (c,), (j,), more in zip(plain, cot, as_json, extra)]
    readings = iter(read([p for p, ts in zip(pairs, texts) for _ in ts], [t for ts in texts for t in ts]))
    out = []
    for (g,), more in zip(plain, extra):
        views, extra_views = [next(readings) for _ in range(3)], [next(readings) for _ in more]
        agreed = majority(views)
        samples = [(g, views[0]), *zip(more, extra_views)]
        keep = next((x.text for x, r in samples if agreed and r == agreed), None)
        out.append((keep, None, f"views {views} -> {agreed}" + ("" if keep or not agreed else ", no plain sample agrees")))
    return out


def _self_refine(model, tok, pairs, args):
    first = _sample(model, tok, [p.wrapped for p in pairs], args, 1, 0.0)
    turns = [[*p.wrapped, {"role": "assistant", "content": c.text}, {"role": "user", "content": REFINE_TURN}]
             for p, (c,) in zip(pairs, first)]
    return [(c.text, None, "refined") for (c,) in _sample(model, tok, turns, args, 1, 0.0)]


def _self_reward(model, tok, pairs, args):
    cands = _sample(model, tok, [p.wrapped for p in pairs], args, args.num_candidates, args.candidate_temperature)
    out = []
    for cs, rs in zip(cands, _ratings(model, tok, pairs, cands, args.rating_scale)):
        best = max(range(len(cs)), key=rs.__getitem__)
        out.append((cs[best].text, rs[best], f"rated best of {len(cs)}"))
    return out


def dual_candidates(model, tok, prompts, args) -> list[list[Any]]:
    """Per prompt: the greedy answer, num_candidates - 2 nucleus samples (at least one) and the best beam."""
    from opct.chat import render_prompt
    from opct.generation import generate, beam_search_ids

    greedy = _sample(model, tok, prompts, args, 1, 0.0)
    nucleus = generate(model, tok, prompts, max_new_tokens=args.target_max_new_tokens, top_p=args.nucleus_top_p,
                       temperature=args.candidate_temperature, num_samples=max(1, args.num_candidates - 2),
                       batch_size=args.target_batch_size)
    rendered = [render_prompt(tok, p) for p in prompts]
    beams = []
    for s in range(0, len(rendered), args.target_batch_size):
        beams += beam_search_ids(model, tok, rendered[s : s + args.target_batch_size], num_beams=args.num_beams,
                                 max_new_tokens=args.target_max_new_tokens)
    return [[g, *ns, b] for (g,), ns, b in zip(greedy, nucleus, beams)]


def parse_rating(text: str, scale: int) -> int | None:
    """The first rating 1..scale in a reward model's reply ("Rating: 4", "**4**/5"), else None."""
    found = re.search(rf"\b([1-{scale}])\b", text or "")
    return int(found.group(1)) if found else None


def _reward_ratings(backend, pairs, candidates: list[list[Any]], scale: int = 5) -> list[list[float]]:
    """Each candidate's rating by an external reward model (an unreadable reply counts 0)."""
    replies = [row[0] for row in backend.complete(rating_requests(pairs, candidates, scale), max_new_tokens=8)]
    return regroup([float(parse_rating(r, scale) or 0) for r in replies], candidates)


def _dual_decoding(model, tok, pairs, args):
    cands = dual_candidates(model, tok, [p.wrapped for p in pairs], args)
    if not args.reward_model:
        return [(cs[mbr_index([c.text for c in cs])].text, None, f"MBR of {len(cs)}") for cs in cands]
    from opct.serving import JudgeBackend, client_or_spec

    backend = JudgeBackend(client_or_spec(args.reward_model), owner="reward model")
    out = []
    for cs, rs in zip(cands, _reward_ratings(backend, pairs, cands)):
        best = max(range(len(cs)), key=rs.__getitem__)
        out.append((cs[best].text, rs[best], f"reward {rs[best]:.0f}/5, best of {len(cs)}"))
    return out


def answer_key_reward(pairs, texts) -> list[bool]:
    """The oracle's default external reward: the answer names the pair's correct option."""
    from opct.evals.sycophancy import parse_answer

    return [parse_answer(t) == _answer_key(p) for p, t in zip(pairs, texts)]


def _oracle(model, tok, pairs, args, reward: "OracleReward | None" = None):
    if reward is None:
        reward = answer_key_reward
        for p in pairs:  # fail before sampling, not after
            _answer_key(p)
    cands = _sample(model, tok, [p.wrapped for p in pairs], args, args.num_candidates, args.candidate_temperature)
    flat = [(p, c.text) for p, cs in zip(pairs, cands) for c in cs]
    good = iter(reward([p for p, _ in flat], [t for _, t in flat]))
    out = []
    for cs in cands:
        right = [c.text for c in cs if next(good) is True]
        out.append((right[0] if right else None, None, f"{len(right)}/{len(cs)} accepted by the oracle"))
    return out


SELECT = {"greedy": _greedy, "self_certainty": _by_self_certainty, "diverse": _diverse, "multi_view": _multi_view,
          "self_refine": _self_refine, "self_reward": _self_reward, "dual_decoding": _dual_decoding, "oracle": _oracle}


def select_labels(model, tokenizer, pairs, args: SelfTrainConfig, oracle: OracleReward | None = None,
                  reading: AnswerReading | None = None) -> list[dict[str, Any]]:
    """One record per pair: {"id", "completion" (None: nothing kept), "score", "note"}. `oracle`: the
    oracle selector's external reward (default: the answer key); `reading`: what multi_view compares
    across views (default: the option letter)."""
    extra: dict[str, Any] = {}
    for name, value, selector in (("oracle", oracle, "oracle"), ("reading", reading, "multi_view")):
        if value is not None:
            if args.selector != selector:
                raise ValueError(f"{name} was given to the {args.selector!r} selector, which uses none")
            extra["reward" if name == "oracle" else name] = value
    rows = SELECT[args.selector](model, tokenizer, pairs, args, **extra)
    return [{"id": p.id, "completion": c, "score": score, "note": note} for p, (c, score, note) in zip(pairs, rows)]


def selftrain_targets(model, tokenizer, pairs, args: SelfTrainConfig, oracle: OracleReward | None = None,
                      reading: AnswerReading | None = None) -> dict[str, str]:
    """{pair id: kept label} for the pairs that kept one; made once, cached, resumable by chunk."""
    path = Path(args.targets_file or Path(args.output_dir) / "selftrain_targets.jsonl")
    done = cached_labels(path, pairs, lambda chunk: select_labels(model, tokenizer, chunk, args, oracle, reading),
                         args.target_batch_size, f"{args.selector} labels")
    kept = {p.id: done[p.id]["completion"] for p in pairs if done[p.id]["completion"] is not None}
    print(f"opct selftrain ({args.selector}): a label kept for {len(kept)} of {len(pairs)} prompts", flush=True)
    if not kept:
        raise UserError(f"selector {args.selector!r} kept no label for any of the {len(pairs)} prompts ({path}); "
                        "raise num_candidates or choose another selector")
    return kept


class SelfTrainTrainer(BCTTrainer):
    """`SFTTrainer` on (wrapped prompt, the model's own selected answer to it). `oracle`: the oracle
    selector's external reward, (pairs, answers) -> accepted? per answer (default: the answer key);
    `reading`: what the multi_view selector compares across views, (pairs, answers) -> reading per
    answer (default: the option letter)."""

    def __init__(self, model, args: SelfTrainConfig, train_dataset, processing_class=None, callbacks=None,
                 oracle: OracleReward | None = None, reading: AnswerReading | None = None, **kwargs):
        self.oracle, self.reading = oracle, reading  # read by make_dataset, which the parent's __init__ calls
        super().__init__(model, args, train_dataset, processing_class=processing_class, callbacks=callbacks, **kwargs)

    def make_dataset(self, model, tokenizer, train_dataset, args):
        pairs = dataset_to_pairs(train_dataset)
        labels = selftrain_targets(model, tokenizer, pairs, args, self.oracle, self.reading)
        return bct_dataset([p for p in pairs if p.id in labels], labels)
