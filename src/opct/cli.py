"""The `opct` command line: the parser is built from the command groups in `opct.commands`; each
group only parses its flags and calls the library."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from opct.commands.train import EPILOG_MODELS
from opct.errors import UserError

# Library noise a user can do nothing about, repeated for every model and trainer in a run: TRL's
# configs and peft still use transformers' deprecated `gradient_checkpointing` names, and peft cannot
# find a hub config for an embedded model's name (its vocabulary is unchanged, as peft then assumes).
QUIET_WARNINGS = ((FutureWarning, r"`(is_)?gradient_checkpointing` is deprecated"),
                  (UserWarning, r"Could not find a config file in embedded:"))


def build_parser() -> argparse.ArgumentParser:
    from opct.commands import ALL

    parser = argparse.ArgumentParser(
        prog="opct",
        description="Consistency training for language-model safety: train with OPCT, SFT/BCT or ACT on contrastive "
        "pairs, and evaluate sycophancy, jailbreaks, safety awareness and capability.",
        epilog="Start with `opct demo --profile quick` (minutes) or `opct demo` (the sycophancy study on the embedded "
        "Qwen-Coder 1.5B). " + EPILOG_MODELS + " Environment: OPCT_CACHE (embedded models' cache, default "
        "~/.cache/opct); OPCT_BF16=1|0 (bf16 autocast on or off; by default on where bf16 matmuls are native: Ampere "
        "and later GPUs, CPUs with AVX-512; fp32 elsewhere, where emulated bf16 was 90x slower on a CPU); "
        "OPCT_ONEDNN=1|0 (fp32 CPU linears without gradients on oneDNN instead of MKL; by default on AMD CPUs, "
        "where MKL is slow: 1.58x faster sampling on a 2-core EPYC).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in ALL:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
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
