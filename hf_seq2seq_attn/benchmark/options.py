"""The benchmark's options and figure names: argparse only, so `seq2seq-attn benchmark --help` is instant.

The figure tables here (names, which figures need which, the side-by-side set) are the ones the modules
that measure them use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FIGURES = (
    "matmul",
    "bandwidth",
    "train",
    "mfu",
    "greedy",
    "beam",
    "latency",
    "step",
    "memory",
    "backends",
    "compiled",
)
# `compiled` (the training step under torch.compile, beside the eager one) only when asked for: inductor
# compiles the unrolled step for minutes on a CPU
DEFAULT_FIGURES = tuple(name for name in FIGURES if name != "compiled")
# figures computed from other figures; the batch-1 ones print their floors from the machine's peaks
NEEDS = {
    "mfu": ("train", "matmul"),
    "latency": ("matmul", "bandwidth"),
    "backends": ("matmul", "bandwidth"),
    "compiled": ("train",),
}
# `--compare_shape`: the architectures a `--compare_with` run can time (`workload.compare_arch`).
COMPARE_SHAPES = ("default", "joey")
COMPARE_FIGURES = (
    "train",
    "greedy",
    "beam",
    "latency",
    "onnx_fp32",
    "onnx_int8",
    "onnx_fp32_beam",
    "onnx_int8_beam",
)
# The data section's default corpus sizes (pairs).
DEFAULT_PAIRS = (1_000_000, 4_000_000)
DEFAULT_BASELINE_PAIRS = (250_000, 500_000)
DEFAULT_TOKENIZE_PAIRS = 100_000


DESCRIPTION = """Speed benchmark: throughput, latency, memory and FLOP utilisation, against the textbook baseline,
other backends (ONNX Runtime) and another checkout of this package."""
EPILOG = """examples:
  seq2seq-attn benchmark                                   # every figure, current thread count
  seq2seq-attn benchmark --threads 1 2 --repeats 3 --only train,mfu
  seq2seq-attn benchmark --quick                           # tiny shapes, one repeat (smoke test)
  seq2seq-attn benchmark --only compiled                   # torch.compile'd training step beside eager
  git worktree add /tmp/base036 036bb98
  seq2seq-attn benchmark --compare_with /tmp/base036 --threads 1 --repeats 5
  seq2seq-attn benchmark --compare_with . --compare_python /tmp/venv-transformers-5.23/bin/python
  seq2seq-attn benchmark --data                            # 1M and 4M pairs: ~30 minutes on 2 cores
  git archive HEAD | tar -x -C /tmp/today   # (mkdir /tmp/today first)
  seq2seq-attn benchmark --data --compare_with /tmp/today --data_baseline_pairs 250000 500000
(`python scripts/benchmark.py ...` is the same command.)"""


class ArgumentError(Exception):
    """A user mistake on the command line; `main` prints it and returns 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="seq2seq-attn benchmark",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_arguments(parser)
    _add_compare_arguments(parser)
    _add_data_arguments(parser)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # internal: KIND:ARCH, one memory probe
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Thread counts, timing settings, device, and which figures."""
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="run everything once per torch thread count (default: current)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per figure; the median is reported"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default="auto", help="auto = cuda when available"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny shapes, 1 repeat, the default architecture only, memory measured in-process",
    )
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset of {','.join(FIGURES)} (default: all but compiled)",
    )


def _add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare_with",
        metavar="DIR",
        type=Path,
        help=f"run {','.join(COMPARE_FIGURES)} side by side with the package in checkout DIR (CPU) and print "
        "ours/theirs ratios, instead of the other figures",
    )
    parser.add_argument(
        "--compare_shape",
        choices=COMPARE_SHAPES,
        default="default",
        help="the architecture a --compare_with run times: the default shape, or joey (the same sizes with a "
        "Luong-style decoder and input feeding, as Joey NMT's RNN)",
    )
    parser.add_argument(
        "--compare_python",
        metavar="PYTHON",
        default=sys.executable,
        help="the interpreter of the --compare_with side, e.g. another venv's bin/python to compare "
        "transformers releases (default: this one)",
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data section (--data)")
    data.add_argument("--data", action="store_true", help="run the data section instead of the model figures")
    data.add_argument("--data_pairs", type=int, nargs="+", default=list(DEFAULT_PAIRS), metavar="N",
                      help="corpus sizes our train command runs at, cold then warm (default: 1M 4M)")  # fmt: skip
    data.add_argument("--data_baseline_pairs", type=int, nargs="+", default=list(DEFAULT_BASELINE_PAIRS),
                      metavar="N", help="sizes the --compare_with checkout's train command runs at "
                      "(its reader holds lists: default 250k 500k)")  # fmt: skip
    data.add_argument("--data_tokenize_pairs", type=int, default=DEFAULT_TOKENIZE_PAIRS, metavar="N",
                      help="pairs tokenized for the pairs/s figure")  # fmt: skip
    data.add_argument("--data_dir", type=Path, help="keep the synthetic corpora here (reused next time)")
