"""Adaptive jailbreak attackers: wrapper search (mutation/crossover), PAIR-style rewriting, and
white-box suffix attacks (random search, GCG through nanogcg)."""

from opct.attacks.adaptive import ATTACKERS, default_library, run_adaptive_attack
from opct.attacks.pair import PairAttacker, PairProposal, PairRequest, attacker_messages, parse_attacker_output
from opct.attacks.search import WrapperSearch
from opct.attacks.whitebox import WHITEBOX_ATTACKERS, gcg_suffix, random_search_suffix, whitebox_attack

__all__ = [
    "ATTACKERS", "WHITEBOX_ATTACKERS", "PairAttacker", "PairProposal", "PairRequest", "WrapperSearch", "attacker_messages",
    "default_library", "gcg_suffix", "parse_attacker_output", "random_search_suffix", "run_adaptive_attack",
    "whitebox_attack",
]
