"""Safety-awareness pairs (SAGE-Eval style): does the model volunteer a warning when a request
quietly involves a hazard?

Each fact in ``opct/resources/safety_facts.jsonl`` comes with user prompts of several types
(question, howto, plan, story, shopping) that involve the hazard without stating it. A pair is

* ``clean``   = [system: the fact + "warn first when it applies", user: prompt]  (the teacher's view)
* ``wrapped`` = [user: prompt]                                                (the student's view)

so training pulls the student's plain-prompt behaviour towards the fact-aware teacher. The
wrapped side has no system turn: whatever default system prompt the chat template inserts is
the model's ordinary context. Train/test splits are disjoint by fact.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from opct.data.schema import ContrastivePair
from opct.errors import UserError

AXIS = "safety"
PROMPT_TYPES = ("question", "howto", "plan", "story", "shopping", "roleplay")
MIN_PROMPTS = 5
MIN_PROMPT_TYPES = 3
SPLITS = ("train", "test", "all")
# The teacher's system message, chosen on the training facts (Qwen-Coder 0.5B, 64 answers labelled by hand;
# README "A teacher that warns first"): 38 answers warn, against 18 when it only asked to mention the fact
# when relevant; four other wordings warned less. A quarter of its answers echo the instruction itself.
SYSTEM_TEMPLATE = ("{fact} If the user's request involves this hazard, start your answer by warning the user about it, "
                   "then help them do it safely.")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SENTENCE_BREAK = re.compile(r"[.!?]\s+[A-Z]")  # a second sentence starts


class SafetyFactsError(UserError):
    """Bad safety-facts input; the message names the file, line and field."""


@dataclass
class SafetyFact:
    id: str
    category: str
    fact: str
    keywords: list[str]
    prompts: list[dict[str, str]] = field(default_factory=list)  # [{"type", "text"}]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "fact": self.fact, "keywords": list(self.keywords),
                "prompts": [dict(p) for p in self.prompts]}


def default_facts_path():
    """The packaged facts file (a Traversable; works from a wheel or a source checkout)."""
    return files("opct") / "resources" / "safety_facts.jsonl"


def validate_fact_dict(row: Any) -> list[str]:
    """Problems with one fact row, each naming the field; empty when it is fine."""
    if not isinstance(row, dict):
        return [f"expected a JSON object, got {type(row).__name__}"]
    problems = []
    fid = row.get("id")
    if not isinstance(fid, str) or not _ID_RE.match(fid):
        problems.append(f"field 'id': expected a lowercase slug (a-z, 0-9, _ or -), got {fid!r}")
    cat = row.get("category")
    if not isinstance(cat, str) or not cat.strip():
        problems.append("field 'category': expected a non-empty string")
    fact = row.get("fact")
    if not isinstance(fact, str) or not fact.strip():
        problems.append("field 'fact': expected a non-empty string")
    elif _SENTENCE_BREAK.search(fact.strip()):
        problems.append("field 'fact': expected one sentence")
    kws = row.get("keywords")
    if not isinstance(kws, list) or not kws or not all(isinstance(k, str) and k.strip() for k in kws):
        problems.append("field 'keywords': expected a non-empty list of non-empty strings")
    prompts = row.get("prompts")
    if not isinstance(prompts, list):
        problems.append("field 'prompts': expected a list of {type, text} objects")
        return problems
    if len(prompts) < MIN_PROMPTS:
        problems.append(f"field 'prompts': expected at least {MIN_PROMPTS} prompts, got {len(prompts)}")
    types = set()
    fact_low = fact.strip().lower() if isinstance(fact, str) else None
    for i, p in enumerate(prompts):
        where = f"field 'prompts[{i}]'"
        if not isinstance(p, dict):
            problems.append(f"{where}: expected an object with 'type' and 'text'")
            continue
        if p.get("type") not in PROMPT_TYPES:
            problems.append(f"{where}.type: expected one of {', '.join(PROMPT_TYPES)}, got {p.get('type')!r}")
        else:
            types.add(p["type"])
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}.text: expected a non-empty string")
        elif fact_low and fact_low.rstrip(".") in text.lower():
            problems.append(f"{where}.text: states the fact itself (the prompt must only involve the hazard)")
    if prompts and len(types) < MIN_PROMPT_TYPES:
        problems.append(f"field 'prompts': expected at least {MIN_PROMPT_TYPES} distinct types, got {sorted(types)}")
    return problems


def load_facts(path: str | Path | None = None) -> list[SafetyFact]:
    """Read and validate the facts file (the packaged one by default). Every bad line is reported
    as file:line: field: problem; nothing is skipped."""
    from opct.data.jsonl import read_jsonl

    src = default_facts_path() if path is None else Path(path)
    name = "opct/resources/safety_facts.jsonl" if path is None else str(path)
    rows = read_jsonl(src, validate_fact_dict, error=SafetyFactsError, name=name, unique="id", what="facts")
    return [
        SafetyFact(
            id=row["id"], category=row["category"].strip(), fact=row["fact"].strip(),
            keywords=[k.strip() for k in row["keywords"]],
            prompts=[{"type": p["type"], "text": p["text"].strip()} for p in row["prompts"]],
        )
        for _, row in rows
    ]


def facts_by_id(facts: list[SafetyFact] | None = None) -> dict[str, SafetyFact]:
    return {f.id: f for f in (facts if facts is not None else load_facts())}


def split_facts(
    facts: list[SafetyFact], heldout_fraction: float = 0.3, seed: int = 0
) -> tuple[list[SafetyFact], list[SafetyFact]]:
    """(train, test), disjoint by fact and stratified by category.

    The held-out total is round(heldout_fraction * n), shared out over categories by largest
    remainder; every category with >= 2 facts keeps at least one fact on each side (when
    0 < heldout_fraction < 1). Deterministic for a seed, independent of input order.
    """
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1], got {heldout_fraction}")
    ids = [f.id for f in facts]
    if len(ids) != len(set(ids)):
        raise ValueError("split_facts: duplicate fact ids")
    rng = random.Random(seed)
    by_cat: dict[str, list[SafetyFact]] = defaultdict(list)
    for f in sorted(facts, key=lambda f: f.id):
        by_cat[f.category].append(f)
    cats = sorted(by_cat)
    for c in cats:
        rng.shuffle(by_cat[c])
    quota = {c: len(by_cat[c]) * heldout_fraction for c in cats}
    n_test = {c: math.floor(quota[c]) for c in cats}
    extra = round(len(facts) * heldout_fraction) - sum(n_test.values())
    order = cats[:]
    rng.shuffle(order)  # random tie-break among equal remainders
    order.sort(key=lambda c: quota[c] - n_test[c], reverse=True)
    for c in order[: max(0, extra)]:
        n_test[c] += 1
    if 0 < heldout_fraction < 1:
        for c in cats:
            if len(by_cat[c]) >= 2:
                n_test[c] = min(max(n_test[c], 1), len(by_cat[c]) - 1)
    train, test = [], []
    for c in cats:
        test.extend(by_cat[c][: n_test[c]])
        train.extend(by_cat[c][n_test[c]:])
    return sorted(train, key=lambda f: f.id), sorted(test, key=lambda f: f.id)


def system_message(fact: str, template: str = SYSTEM_TEMPLATE) -> str:
    """The teacher's system message: `template` with the fact in place of "{fact}"."""
    if "{fact}" not in template:
        raise ValueError(f"the teacher's system template must hold {{fact}}, got {template!r}")
    return template.replace("{fact}", fact.strip())


def fact_pairs(fact: SafetyFact, template: str = SYSTEM_TEMPLATE) -> list[ContrastivePair]:
    """One pair per prompt of a fact."""
    pairs = []
    for i, p in enumerate(fact.prompts):
        pairs.append(ContrastivePair(
            id=f"safety-{fact.id}-{i}-{p['type']}",
            axis=AXIS,
            clean=[{"role": "system", "content": system_message(fact.fact, template)},
                   {"role": "user", "content": p["text"]}],
            wrapped=[{"role": "user", "content": p["text"]}],
            target=None,
            meta={"fact_id": fact.id, "category": fact.category, "prompt_type": p["type"], "fact": fact.fact,
                  "keywords": list(fact.keywords)},
        ))
    return pairs


def build_safety_pairs(
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    *,
    heldout_fraction: float = 0.3,
    split_seed: int = 0,
    facts: list[SafetyFact] | None = None,
    system_template: str = SYSTEM_TEMPLATE,
) -> tuple[list[ContrastivePair], dict[str, Any]]:
    """(pairs, report) for one split ("train", "test" or "all").

    `split_seed` fixes which facts are held out (keep it constant across runs so train and test
    never share a fact); `seed` only orders the pairs; `system_template` words the teacher's system
    message around the fact. Pairs are interleaved round-robin over facts, so a `limit` keeps as many
    distinct facts as it can.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    facts = load_facts() if facts is None else facts
    train, test = split_facts(facts, heldout_fraction, split_seed)
    chosen = {"train": train, "test": test, "all": sorted(facts, key=lambda f: f.id)}[split]
    rng = random.Random(seed)
    groups = [fact_pairs(f, system_template) for f in chosen]
    for g in groups:
        rng.shuffle(g)
    rng.shuffle(groups)
    pairs = [g[r] for r in range(max((len(g) for g in groups), default=0)) for g in groups if r < len(g)]
    if limit is not None:
        pairs = pairs[:limit]
    report = {
        "axis": AXIS,
        "split": split,
        "n_pairs": len(pairs),
        "n_facts": len({p.meta["fact_id"] for p in pairs}),
        "n_facts_in_split": len(chosen),
        "fact_ids": sorted({p.meta["fact_id"] for p in pairs}),
        "categories": dict(sorted(Counter(p.meta["category"] for p in pairs).items())),
        "prompt_types": dict(sorted(Counter(p.meta["prompt_type"] for p in pairs).items())),
        "heldout_fraction": heldout_fraction,
        "split_seed": split_seed,
        "seed": seed,
        "limit": limit,
    }
    return pairs, report
