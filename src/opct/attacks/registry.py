"""The adaptive attackers by name. A new attacker is one module with a run function and a line here.

A run function takes (model, tokenizer, behaviors, judge, *, budget, threshold, seed, max_new_tokens,
batch_size, progress, **options) and returns {"rows": one per behaviour in `run_adaptive_attack`'s
format, "attacker": its settings}; `opct.attacks.evaluate.evaluate_adaptive` calls it and
`adaptive_metrics` reads the rows. The function is named as "module:function" and imported on first
use, so listing the attackers loads none of them (the RL attacker needs TRL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable


@dataclass(frozen=True)
class Attacker:
    title: str  # as reports name it
    unit: str  # what its budget counts, per behaviour
    function: str  # "module:function"
    fixed: dict[str, Any] = field(default_factory=dict)  # keyword arguments the function always gets
    trains: bool = False  # trains against each target: needs train_behaviors (never the evaluated ones) and out

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        module, name = self.function.split(":")
        fn: Callable[..., dict[str, Any]] = getattr(import_module(module), name)
        return fn(*args, **self.fixed, **kwargs)


ATTACKERS: dict[str, Attacker] = {
    "search": Attacker("adaptive wrapper-search attacker", "target queries", "opct.attacks.adaptive:run_adaptive_attack",
                       {"attacker": "search"}),
    "pair": Attacker("PAIR-style rewriting attacker", "target queries", "opct.attacks.adaptive:run_adaptive_attack",
                     {"attacker": "pair"}),
    "both": Attacker("wrapper search and PAIR rewriting", "target queries", "opct.attacks.adaptive:run_adaptive_attack",
                     {"attacker": "both"}),
    "random_suffix": Attacker("white-box random-suffix attacker", "target passes", "opct.attacks.whitebox:whitebox_attack",
                              {"attacker": "random_suffix"}),
    "gcg": Attacker("white-box GCG attacker", "target passes", "opct.attacks.whitebox:whitebox_attack",
                    {"attacker": "gcg"}),
    "rl": Attacker("RL-trained attacker", "target queries", "opct.attacks.rl:train_and_attack", trains=True),
}


def get_attacker(name: str) -> Attacker:
    if name not in ATTACKERS:
        raise ValueError(f"attacker must be one of {', '.join(ATTACKERS)}, got {name!r}")
    return ATTACKERS[name]
