"""Organism plug-ins for `opct audit`: a new misalignment is one module defining an `Organism` plus
a line below (or `register` from the user's own code)."""

from __future__ import annotations

from opct.audit.organisms.base import AuditError, Organism, split_audit_pairs

ORGANISMS: dict[str, Organism] = {}


def register(organism: Organism) -> Organism:
    ORGANISMS[organism.name] = organism
    return organism


from opct.audit.organisms import sycophancy  # noqa: E402  (the built-in organisms)

__all__ = ["ORGANISMS", "AuditError", "Organism", "register", "split_audit_pairs", "sycophancy"]
