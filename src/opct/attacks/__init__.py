"""Adaptive jailbreak attackers: wrapper search (mutation/crossover) and PAIR-style rewriting."""

from opct.attacks.adaptive import ATTACKERS, default_library, run_adaptive_attack
from opct.attacks.pair import PairAttacker, PairProposal, PairRequest, attacker_messages, parse_attacker_output
from opct.attacks.search import WrapperSearch

__all__ = [
    "ATTACKERS", "PairAttacker", "PairProposal", "PairRequest", "WrapperSearch", "attacker_messages",
    "default_library", "parse_attacker_output", "run_adaptive_attack",
]
