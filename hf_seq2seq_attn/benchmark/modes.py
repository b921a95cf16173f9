"""The four modes `cli.main` runs once the options are parsed: the figures (normal run), `--compare_with`
(side by side with another checkout), `--data` (the data section), and the internal `--memory-child` (one
memory figure in a fresh process, started by `training.measure_memory`)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

import torch
import transformers

from .backends import onnx_available
from .compare import (
    COMPARE_FLOORS,
    OURS_ONLY,
    check_checkout,
    print_compare_floors,
    run_compare,
)
from .data import run_data_section
from .figures import run_figures, summarize, summarize_floors
from .floor import measure_peaks
from .options import COMPARE_FIGURES, DEFAULT_FIGURES, FIGURES, NEEDS, ArgumentError
from .report import print_data_header, print_header
from .training import memory_step
from .workload import Bench, compare_arch, make_archs, workload_of


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the parsed arguments and resolve what needs torch (threads, device); `ArgumentError` for user
    mistakes."""
    if args.threads is None:
        args.threads = [torch.get_num_threads()]
    allowed = COMPARE_FIGURES if args.compare_with else FIGURES
    default = COMPARE_FIGURES if args.compare_with else DEFAULT_FIGURES
    only = {name.strip() for name in (args.only or ",".join(default)).split(",") if name.strip()}
    if unknown := only - set(allowed):
        raise ArgumentError(f"--only: unknown figure(s) {sorted(unknown)}; choose from {','.join(allowed)}")
    for figure in list(only):
        only.update(NEEDS.get(figure, ()))
    args.only = only
    if min(args.threads) < 1 or args.repeats < 1 or args.warmup < 0:
        raise ArgumentError("--threads and --repeats must be >= 1 and --warmup >= 0")
    if min(*args.data_pairs, *args.data_baseline_pairs, args.data_tokenize_pairs) < 1:
        raise ArgumentError("--data_pairs, --data_baseline_pairs and --data_tokenize_pairs must be >= 1")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("--device cuda: no CUDA device is available")
    if args.compare_with is not None:
        try:
            args.compare_with = check_checkout(args.compare_with)
        except ValueError as error:
            raise ArgumentError(str(error)) from None
        if shutil.which(args.compare_python) is None:
            raise ArgumentError(f"--compare_python {args.compare_python}: no such executable")
    if args.quick:
        args.repeats = 1
    return args


def run(args: argparse.Namespace) -> int:
    """Check the parsed options and run their mode; returns the exit code (2: a user mistake)."""
    try:
        args = check_args(args)
    except ArgumentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
    archs = [compare_arch(args.compare_shape, args.quick)]  # what the workers run
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
                args.compare_shape,
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
