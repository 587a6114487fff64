"""Axis plug-ins. `opct demo`, the report and the CLI iterate over `AXES`; a new axis is one module
defining an `Axis` plus a line below (or `register` from the user's own code)."""

from __future__ import annotations

from opct.axes.base import Axis, Verdict

AXES: dict[str, Axis] = {}


def register(axis: Axis) -> Axis:
    AXES[axis.name] = axis
    return axis


def get_axis(name: str) -> Axis | None:
    return AXES.get(name)


from opct.axes import sycophancy, jailbreak, safety  # noqa: E402, I001  (the built-in axes, in this order)

__all__ = ["AXES", "Axis", "Verdict", "get_axis", "register", "jailbreak", "safety", "sycophancy"]
