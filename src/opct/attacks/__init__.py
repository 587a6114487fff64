"""Adaptive jailbreak attackers: wrapper search (mutation/crossover), PAIR-style rewriting, white-box
suffix attacks (random search, GCG through nanogcg) and a GRPO-trained attacker, by name in `ATTACKERS`.

Names are imported on first use, so `opct.attacks.registry` (what the command line lists) loads no
attacker and no torch."""

from importlib import import_module

_HOMES = {
    "default_library": "adaptive", "run_adaptive_attack": "adaptive", "evaluate_adaptive": "evaluate",
    "PairAttacker": "pair", "PairProposal": "pair", "PairRequest": "pair", "attacker_messages": "pair",
    "parse_attacker_output": "pair",
    "ATTACKERS": "registry", "Attacker": "registry", "get_attacker": "registry",
    "WrapperSearch": "search",
    "WHITEBOX_ATTACKERS": "whitebox", "gcg_suffix": "whitebox", "random_search_suffix": "whitebox",
    "whitebox_attack": "whitebox",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'opct.attacks' has no attribute {name!r}")
    return getattr(import_module(f"opct.attacks.{_HOMES[name]}"), name)
