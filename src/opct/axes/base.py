"""The `Axis` interface: what `opct demo` and the report need to know about one safety axis."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from opct.study import DemoProfile

# (prof, data dir, seed, base model, tokenizer) -> data report; writes DIR/train.jsonl and the axis's test set
BuildData = Callable[[DemoProfile, Path, int, Any, Any], dict[str, Any]]
# (model, tokenizer, prof, data dir, seed, view) -> the per-item rows of each block ("clean" view: the teacher)
Answer = Callable[[Any, Any, DemoProfile, Path, int, str], dict[str, list[dict[str, Any]]]]
# (model, tokenizer, prof, data dir) -> {metric: value} on DIR/val.jsonl: one learning-curve point
Curve = Callable[[Any, Any, DemoProfile, Path], dict[str, float | None]]
# rows -> metrics (one block per mode, or the metrics themselves when the axis has one mode)
Score = Callable[[dict[str, list[dict[str, Any]]]], dict[str, Any]]
# (rows, mode, metric) -> {item id: score} for a verdict's metric
ItemScores = Callable[[dict[str, list[dict[str, Any]]], "str | None", str], dict[str, float]]


@dataclass(frozen=True)
class Verdict:
    """A per-item metric the methods are compared on (the report's "OPCT below SFT: yes/no/tied/unclear")."""

    mode: str | None  # the metrics block (None: the axis's metrics themselves)
    metric: str
    better: str  # "lower" or "higher"
    title: str  # e.g. "sycophancy rate, trained families"
    item_mean: bool = True  # the metric is the mean of the item scores (so seeds pool into it)


@dataclass(frozen=True)
class Axis:
    """One axis: building its pairs, answering its test set, scoring the answers, its headline and notes.

    `answer` returns rows and `score` turns rows into metrics, so the answers of several training seeds
    can be pooled and scored again."""

    name: str
    profiles: dict[str, DemoProfile]
    build_data: BuildData
    answer: Answer
    score: Score
    item_scores: ItemScores
    headline: str  # the metric plotted per method
    better: str  # "lower" or "higher"
    verdicts: tuple[Verdict, ...]
    modes: dict[str, str] = field(default_factory=dict)  # metric blocks shown as tables: mode -> title
    notes: tuple[str, ...] = ()
    teacher: bool = False  # also answer the clean prompt with the base weights (the teacher's ceiling)
    curve: Curve | None = None  # the validation metric of the learning curves (build_data writes DIR/val.jsonl)
    judged: bool = False  # its answers are judged by the profile's `judge` (`opct demo --judge`)
    # a warning for the top of the report when the profile's judge is one measured unreliable on trained models
    judge_warning: Callable[[DemoProfile], str | None] | None = None

    def evaluate(self, model, tokenizer, prof: DemoProfile, data: Path, seed: int,
                 view: str = "wrapped") -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        """(metrics, rows) of one model on the axis's test set."""
        rows = self.answer(model, tokenizer, prof, data, seed, view)
        return self.score(rows), rows

    def summary(self, metrics: dict[str, Any]) -> str:
        """One line with the headline of every verdict block that was measured (an attacker the
        profile did not run has no block)."""
        parts = []
        for v in self.verdicts:
            if v.mode and v.mode not in metrics:
                continue
            m = metrics[v.mode] if v.mode else metrics
            parts.append(f"{v.title} {_value(m.get(v.metric))} (n={_n(m.get(v.metric))})")
        return ", ".join(parts)


def _value(m: Any) -> str:
    if isinstance(m, dict):
        m = m.get("value")
    return "-" if m is None else f"{m:.3f}"


def _n(m: Any) -> str:
    return str(m.get("n")) if isinstance(m, dict) and m.get("n") is not None else "-"
