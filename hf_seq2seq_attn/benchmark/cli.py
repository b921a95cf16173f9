"""`seq2seq-attn benchmark`: the options, and `main`, which runs one of four modes: the figures (normal
run), `--compare_with` (side by side with another checkout), `--data` (the data section), and the internal
`--memory-child` (one memory figure in a fresh process, started by `training.measure_memory`)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
import transformers

from .backends import onnx_available
from .compare import (
    COMPARE_FIGURES,
    COMPARE_FLOORS,
    OURS_ONLY,
    check_checkout,
    print_compare_floors,
    run_compare,
)
from .data import DEFAULT_BASELINE_PAIRS, DEFAULT_PAIRS, DEFAULT_TOKENIZE_PAIRS, run_data_section
from .figures import FIGURES, NEEDS, run_figures, summarize, summarize_floors
from .floor import measure_peaks
from .report import print_data_header, print_header
from .training import memory_step
from .workload import Bench, make_archs, workload_of

DESCRIPTION = """Speed benchmark: throughput, latency, memory and FLOP utilisation, against the textbook baseline,
other backends (ONNX Runtime) and another checkout of this package."""
EPILOG = """examples:
  seq2seq-attn benchmark                                   # every figure, current thread count
  seq2seq-attn benchmark --threads 1 2 --repeats 3 --only train,mfu
  seq2seq-attn benchmark --quick                           # tiny shapes, one repeat (smoke test)
  git worktree add /tmp/base036 036bb98
  seq2seq-attn benchmark --compare_with /tmp/base036 --threads 1 --repeats 5
  seq2seq-attn benchmark --compare_with . --compare_python /tmp/venv-transformers-5.23/bin/python
  seq2seq-attn benchmark --data                            # 1M and 4M pairs: ~30 minutes on 2 cores
  git archive HEAD | tar -x -C /tmp/today   # (mkdir /tmp/today first)
  seq2seq-attn benchmark --data --compare_with /tmp/today --data_baseline_pairs 250000 500000
(`python scripts/benchmark.py ...` is the same command.)"""


class _ArgumentError(Exception):
    """A user mistake on the command line; `main` prints it and returns 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(message)


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
        default=[torch.get_num_threads()],
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
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(FIGURES)}")


def _add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare_with",
        metavar="DIR",
        type=Path,
        help=f"run {','.join(COMPARE_FIGURES)} side by side with the package in checkout DIR (CPU) and print "
        "ours/theirs ratios, instead of the other figures",
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the arguments; `_ArgumentError` for user mistakes."""
    args = build_parser().parse_args(argv)
    allowed = COMPARE_FIGURES if args.compare_with else FIGURES
    only = {name.strip() for name in (args.only or ",".join(allowed)).split(",") if name.strip()}
    if unknown := only - set(allowed):
        raise _ArgumentError(f"--only: unknown figure(s) {sorted(unknown)}; choose from {','.join(allowed)}")
    for figure in list(only):
        only.update(NEEDS.get(figure, ()))
    args.only = only
    if min(args.threads) < 1 or args.repeats < 1 or args.warmup < 0:
        raise _ArgumentError("--threads and --repeats must be >= 1 and --warmup >= 0")
    if min(*args.data_pairs, *args.data_baseline_pairs, args.data_tokenize_pairs) < 1:
        raise _ArgumentError("--data_pairs, --data_baseline_pairs and --data_tokenize_pairs must be >= 1")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        raise _ArgumentError("--device cuda: no CUDA device is available")
    if args.compare_with is not None:
        try:
            args.compare_with = check_checkout(args.compare_with)
        except ValueError as error:
            raise _ArgumentError(str(error)) from None
        if shutil.which(args.compare_python) is None:
            raise _ArgumentError(f"--compare_python {args.compare_python}: no such executable")
    if args.quick:
        args.repeats = 1
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (`seq2seq-attn benchmark`, `scripts/benchmark.py`); returns the exit code."""
    try:
        args = parse_args(argv)
    except _ArgumentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    if args.data:
        return data_mode(args)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # save_pretrained's shard bar between the rows
    if args.memory_child:
        return memory_child(args)
    if args.compare_with is not None:
        return compare_mode(args)
    return figures_mode(args)


def figures_mode(args: argparse.Namespace) -> int:
    """The normal run: the selected figures and ratio lines, once per thread count."""
    device, workload = torch.device(args.device), workload_of(args.quick)
    archs = make_archs(args.quick)
    if args.quick:
        archs = archs[:1]  # the default architecture only
    print_header(device, args.repeats, args.warmup, workload, archs, baseline=True)
    print(
        "memory: growth of resident memory over one training step in a fresh process (CPU; "
        "allocator peak on CUDA): gradients + Adam moments (3 x params) + activations"
    )
    bench = Bench(device, args.repeats, args.warmup, workload)
    for threads in args.threads:
        torch.set_num_threads(threads)
        results = run_figures(bench, archs, args.only, threads, args.quick)
        summarize(results, threads)
        summarize_floors(bench, archs, results, threads)
    return 0


def compare_mode(args: argparse.Namespace) -> int:
    """`--compare_with`: the compare figures side by side, once per thread count; 1 when a worker dies
    (e.g. the other checkout's package does not import)."""
    archs = make_archs(args.quick)[:1]  # what the workers run
    print_header(
        torch.device("cpu"), args.repeats, args.warmup, workload_of(args.quick), archs, baseline=False
    )
    figures = [name for name in COMPARE_FIGURES if name in args.only]
    if (note := onnx_available()) is not None and any(name in OURS_ONLY for name in figures):
        print(note)
        figures = [name for name in figures if name not in OURS_ONLY]
    bench = Bench(torch.device("cpu"), args.repeats, args.warmup, workload_of(args.quick), baseline=False)
    floors = any(name in COMPARE_FLOORS for name in figures)
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            peaks = measure_peaks(bench) if floors else None  # before the workers start: a quiet machine
            values = run_compare(
                args.compare_with,
                figures,
                threads,
                args.repeats,
                args.warmup,
                args.quick,
                args.compare_python,
            )
            if peaks is not None:
                print_compare_floors(bench, archs[0], values, peaks, threads)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def data_mode(args: argparse.Namespace) -> int:
    """`--data`: the data section (see `data.py`); 1 when a train command fails."""
    print_data_header()
    try:
        run_data_section(
            args.data_pairs,
            args.compare_with,
            args.data_baseline_pairs,
            args.data_tokenize_pairs,
            data_dir=args.data_dir,
        )
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def memory_child(args: argparse.Namespace) -> int:
    """`--memory-child KIND:ARCH`: print one `memory_step` figure as a JSON line, in this fresh process."""
    kind, arch_name = args.memory_child.split(":")
    torch.set_num_threads(args.threads[0])
    bench = Bench(torch.device(args.device), 1, 0, workload_of(args.quick))
    arch = next(a for a in make_archs(args.quick) if a.name == arch_name)
    print(json.dumps(memory_step(bench, arch, kind)))
    return 0
