"""Wrapper search: an AutoDAN-like attacker over the wrapper library, one instance per behaviour.

The first round tries a seeded sample of the library. Later rounds explore further library
wrappers while nothing scores above `explore_below` (refining a flat refusal wastes queries),
and otherwise spend half their slots on children of the best-scoring wrappers: a `mutate` of
one of the top three, or a `crossover` of the best with another of them.
"""

from __future__ import annotations

import random
from typing import Sequence

from opct.data.wrappers import Wrapper, crossover, mutate


def _key(w: Wrapper) -> tuple[str, str]:
    return w.transform, w.template


class WrapperSearch:
    def __init__(self, library: Sequence[Wrapper], rng: random.Random, explore_below: float = 0.1):
        if not library:
            raise ValueError("WrapperSearch: empty wrapper library")
        self.rng = rng
        self.queue = rng.sample(list(library), len(library))  # exploration order
        self.explore_below = explore_below
        self.tried: set[tuple[str, str]] = set()
        self.scored: list[tuple[float, int, Wrapper]] = []  # (score, order tried, wrapper); parsed only
        self.any_tried: list[Wrapper] = []

    def elites(self, k: int = 3) -> list[Wrapper]:
        return [w for _, _, w in sorted(self.scored, key=lambda t: (-t[0], t[1]))[:k]]

    def best_score(self) -> float | None:
        return max((s for s, _, _ in self.scored), default=None)

    def _child(self, slot: int) -> Wrapper | None:
        parents = self.elites(3) or self.any_tried[-3:]
        if not parents:
            return None
        for _ in range(8):  # a few tries for a template not seen before
            if slot % 2 == 1 and len(parents) >= 2:
                cand = crossover(parents[0], self.rng.choice(parents[1:]), self.rng)
            else:
                cand = mutate(parents[0] if slot % 4 == 0 else self.rng.choice(parents), self.rng)
            if _key(cand) not in self.tried:
                return cand
        return None

    def _explore(self) -> Wrapper | None:
        while self.queue:
            w = self.queue.pop(0)
            if _key(w) not in self.tried:
                return w
        return None

    def propose(self, k: int) -> list[Wrapper]:
        """Up to `k` new wrappers to try (fewer only when no unseen one can be made)."""
        best = self.best_score()
        signal = best is not None and best >= self.explore_below
        n_children = (k + 1) // 2 if signal else 0
        out: list[Wrapper] = []
        keys: set[tuple[str, str]] = set()
        for slot in range(k):
            cand = self._child(slot) if slot < n_children else self._explore()
            if cand is None:  # library exhausted or no parent yet: the other kind
                cand = self._explore() if slot < n_children else self._child(slot)
            if cand is not None and _key(cand) not in keys:
                out.append(cand)
                keys.add(_key(cand))
        return out

    def record(self, wrapper: Wrapper, score: float | None) -> None:
        self.tried.add(_key(wrapper))
        self.any_tried.append(wrapper)
        if score is not None:
            self.scored.append((float(score), len(self.any_tried), wrapper))
