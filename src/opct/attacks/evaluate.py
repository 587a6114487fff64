"""`evaluate_adaptive`: run one of `ATTACKERS` against a target and score it with `adaptive_metrics`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from opct.attacks.registry import get_attacker
from opct.defaults import DECODE_BATCH
from opct.evals.jailbreak import adaptive_metrics, judge_name
from opct.evals.judges import Judge
from opct.evals.target import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from opct.data.jailbreak import Behavior
    from opct.data.wrappers import Wrapper


def evaluate_adaptive(
    model,
    tokenizer,
    behaviors: Sequence["Behavior"],
    judge: Judge,
    *,
    budget: int = 10,
    attacker: str = "search",
    attacker_model: Any = None,
    wrappers: Sequence["Wrapper"] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    max_new_tokens: int = 128,
    batch_size: int = DECODE_BATCH,
    system: str | None = None,
    progress: bool = True,
    **attack_options: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One of `opct.attacks.ATTACKERS` per behaviour: the wrapper search, PAIR-style rewriting or
    both within `budget` target queries each; a white-box suffix attack (random_suffix, gcg) within
    `budget` target passes each; or rl, an attacker GRPO-trained against this target on
    attack_options["train_behaviors"] (checkpoints in attack_options["out"]), then best of
    budget // rounds samples a round. Returns (`adaptive_metrics` plus the settings, rows). Each row
    is one behaviour with its full transcript (every query's prompt, response, score and verdict)
    and "seconds": the attack's wall time spread evenly over its behaviours (an attacker's training included).

    `wrappers`: the search's library (default: `opct.attacks.default_library()`); `attacker_model`:
    a model spec or (model, tokenizer) for PAIR (default: the embedded Qwen 0.5B) or the model the
    RL attacker trains (default: the embedded SmolLM2). Extra keyword options go to the attacker
    (population, per_round, streams, steps, template, ...)."""
    spec = get_attacker(attacker)
    if spec.trains:
        missing = [k for k in ("train_behaviors", "out") if k not in attack_options]
        if missing:
            raise ValueError(f"attacker={attacker!r} needs {' and '.join(missing)} (the behaviours it trains on, its "
                             "run folder)")
    given = {k: v for k, v in (("attacker_model", attacker_model), ("wrappers", wrappers), ("system", system))
             if v is not None}
    started = time.perf_counter()
    result = spec.run(model, tokenizer, behaviors, judge, budget=budget, threshold=threshold, seed=seed,
                      max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, **given,
                      **attack_options)
    for row in result["rows"]:
        row["seconds"] = round((time.perf_counter() - started) / max(1, len(result["rows"])), 2)
    rows = result["rows"]
    metrics = adaptive_metrics(rows, threshold)
    metrics.update(attack="adaptive", judge=judge_name(judge), budget=budget, seed=seed, attacker=result["attacker"])
    return metrics, rows
