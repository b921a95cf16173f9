"""`seq2seq-attn benchmark`: parse the options (argparse only: `--help` answers at once), then run the
mode they ask for (`modes.run`, which imports torch and the model)."""

from __future__ import annotations

import sys

from .options import ArgumentError, build_parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (`seq2seq-attn benchmark`, `scripts/benchmark.py`); returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except ArgumentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    from .modes import run

    return run(args)


__all__ = ["build_parser", "main"]
