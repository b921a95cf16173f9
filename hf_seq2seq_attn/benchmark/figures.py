"""The normal run: each selected figure for each architecture, one printed row each, then the ratio lines and
the floor lines of the batch-1 figures."""

from __future__ import annotations

from typing import Any

from .backends import bench_backends
from .floor import Peaks, bench_bandwidth, cost_metrics, floor_line, floor_metrics, step_cost
from .flops import bench_matmul, bench_mfu
from .generation import bench_beam, bench_greedy, bench_latency, bench_step
from .report import fmt
from .training import bench_train, can_compile, measure_memory
from .workload import Arch, Bench

# (figure, kind, metric, int8 weights) of each batch-1 figure printed against the floor (`floor.py`)
FLOORS = [
    ("latency", "ours", "ms/sentence", False),
    ("backends", "onnx-fp32", "b1_latency_ms", False),
    ("backends", "onnx-int8", "b1_latency_ms", True),
]
Results = dict[tuple[str, str, str], dict[str, Any]]  # (figure, kind, arch) -> metrics

# (label, figure, metric, ours/d2l (True), d2l/ours (False) or ours alone (None)) of each ratio line
RATIOS = [
    ("train tokens/s ours/d2l", "train", "tokens/s", True),
    ("greedy tokens/s ours batched / d2l one-at-a-time", "greedy", "new_tokens/s", True),
    ("latency d2l/ours (ours x as fast)", "latency", "ms/sentence", False),
    ("beam / greedy cost per sentence", "beam", "beam/greedy", None),
    ("generate() / bare decoder loop, batch 1", "step", "b1_generate/loop", None),
    ("MFU %", "mfu", "MFU%", None),
]


def run_figures(bench: Bench, archs: list[Arch], figures: set[str], threads: int, quick: bool) -> Results:
    """Measure and print the selected figures; returns {(figure, kind, arch): metrics}."""
    results: Results = {}

    def emit(figure: str, kind: str, arch: str, metrics: dict[str, Any] | None) -> None:
        if metrics is None:
            return
        results[figure, kind, arch] = metrics
        values = "  ".join(f"{key}={fmt(value)}" for key, value in metrics.items())
        print(f"{figure:<8} {kind:<9} {arch:<8} threads={threads}  {values}", flush=True)

    kinds = ["ours", "d2l"] if bench.baseline else ["ours"]
    if "matmul" in figures:
        emit("matmul", "mm", "fp32", bench_matmul(bench))
    if "bandwidth" in figures:
        emit("bandwidth", "sum", "fp32", bench_bandwidth(bench))
    for arch in archs:
        for kind in kinds if "train" in figures else []:
            emit("train", kind, arch.name, bench_train(bench, arch, kind))
        if "compiled" in figures and arch is archs[0]:  # the default shape only: compiling takes minutes
            if can_compile():
                emit("train", "compiled", arch.name, bench_train(bench, arch, "compiled"))
            else:
                print("note: compiled: no C++ compiler (g++) on PATH, which inductor needs on a CPU; skipped")
        if "mfu" in figures:
            mfu = bench_mfu(bench, arch, results["train", "ours", arch.name], results["matmul", "mm", "fp32"])
            emit("mfu", "ours", arch.name, mfu)
        for kind in kinds if "greedy" in figures else []:
            emit("greedy", kind, arch.name, bench_greedy(bench, arch, kind))
        if "beam" in figures:
            emit("beam", "ours", arch.name, bench_beam(bench, arch))
        for kind in kinds if "latency" in figures else []:
            emit("latency", kind, arch.name, bench_latency(bench, arch, kind))
        if "step" in figures:
            emit("step", "ours", arch.name, bench_step(bench, arch))
        for kind in kinds if "memory" in figures and arch.name in bench.workload.memory_archs else []:
            emit("memory", kind, arch.name, measure_memory(bench, arch, kind, threads, quick))
        if "backends" in figures and arch is archs[0]:  # the default shape only: exports take a while
            for backend, row in bench_backends(bench, arch, threads):
                emit("backends", backend, arch.name, row)
    return results


def summarize(results: Results, threads: int) -> list[str]:
    """One `ratio` line per ratio whose figures were measured in this run (no targets: see README)."""
    lines = []
    for label, figure, metric, ours_over_d2l in RATIOS:
        for (fig, kind, arch), ours in results.items():
            if fig != figure or kind != "ours":
                continue
            if ours_over_d2l is None:
                value = ours[metric]
            else:
                d2l = results.get((figure, "d2l", arch))
                if d2l is None:
                    continue
                value = ours[metric] / d2l[metric] if ours_over_d2l else d2l[metric] / ours[metric]
            lines.append(f"ratio    threads={threads}  {arch:<8} {label:<50} {value:8.3f}")
    for (fig, kind, arch), compiled in results.items():  # `compiled`: against our eager step
        eager = results.get(("train", "ours", arch))
        if fig == "train" and kind == "compiled" and eager is not None:
            value = compiled["tokens/s"] / eager["tokens/s"]
            lines.append(
                f"ratio    threads={threads}  {arch:<8} {'train tokens/s compiled/eager':<50} {value:8.3f}"
            )
    for line in lines:
        print(line)
    return lines


def summarize_floors(bench: Bench, archs: list[Arch], results: Results, threads: int) -> list[str]:
    """Per architecture with a batch-1 figure in `results`: one `floor` line with what a decoder step reads
    and computes and the machine's peaks, then one per batch-1 figure (`FLOORS`): its ms per generated token
    beside the memory and arithmetic floors of a step and its multiple of the larger (`floor.py`)."""
    if ("matmul", "mm", "fp32") not in results or ("bandwidth", "sum", "fp32") not in results:
        return []
    peaks = Peaks(results["bandwidth", "sum", "fp32"]["GB/s"], results["matmul", "mm", "fp32"]["GFLOP/s"])
    tokens = bench.workload.new_tokens
    lines = []
    for arch in archs:
        measured = [row for row in FLOORS if (row[0], row[1], arch.name) in results]
        if not measured:
            continue
        cost = step_cost(bench.ours(arch), bench.workload.src_len)
        lines.append(floor_line(threads, arch.name, "decoder step, batch 1", cost_metrics(cost, peaks)))
        for figure, kind, metric, int8 in measured:
            ms_per_token = results[figure, kind, arch.name][metric] / tokens
            metrics = floor_metrics(ms_per_token, cost, peaks, int8)
            lines.append(floor_line(threads, arch.name, f"{figure} {kind}", metrics))
    for line in lines:
        print(line)
    return lines
