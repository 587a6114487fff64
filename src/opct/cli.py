"""The `opct` command line: the parser is built from the command groups in `opct.commands`; each
group only parses its flags and calls the library."""

from __future__ import annotations

import argparse
import os
import sys

from opct.commands.train import EPILOG_MODELS
from opct.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from opct.commands import ALL

    parser = argparse.ArgumentParser(
        prog="opct",
        description="Consistency training for language-model safety: train with OPCT, SFT/BCT or ACT on contrastive "
        "pairs, and evaluate sycophancy, jailbreaks, safety awareness and capability.",
        epilog="Start with `opct demo --profile quick` (minutes) or `opct demo` (the sycophancy study on the embedded "
        "Qwen-Coder 1.5B). " + EPILOG_MODELS,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in ALL:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    a = parser.parse_args(argv)
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    try:
        return a.func(a) or 0
    except (UserError, FileNotFoundError) as e:
        print(f"opct: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nopct: interrupted; finished work is kept (rerun with --resume to continue)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
