"""Organism plug-ins for `opct audit`: a new misalignment is one module defining an `Organism` plus
a line below (or `register` from the user's own code)."""

from __future__ import annotations

from opct.audit.organisms.base import AuditError, Organism, split_audit_pairs

ORGANISMS: dict[str, Organism] = {}


def register(organism: Organism) -> Organism:
    ORGANISMS[organism.name] = organism
    return organism


from opct.audit.organisms import sycophancy, reward_hacking, spurious, emergent  # noqa: E402, I001  (the built-ins)

__all__ = ["ORGANISMS", "AuditError", "Organism", "emergent", "register", "reward_hacking", "spurious", "split_audit_pairs",
           "sycophancy"]
