"""`--compare_with DIR`: our model's figures side by side with those of the `hf_seq2seq_attn` package in
another checkout DIR, each side in its own worker process, the timed calls alternating between the sides so
that machine noise hits both alike.

Both workers run *these* benchmark modules (the same jobs on both sides, whatever benchmark the other
checkout has: none, the flat `benchmark.py` of older checkouts, or this package); only the model package
differs. See `WORKER_BOOT` for how.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import torch
import transformers

from .backends import onnx_runners
from .floor import Peaks, cost_metrics, floor_line, floor_metrics, step_cost
from .generation import generate_fn, one_at_a_time_fn
from .report import fmt
from .timing import time_once
from .training import ours_train_step
from .workload import Arch, Bench, Workload, compare_arch, workload_of

# `--compare_with` figures timed on our side only (the other checkout may have no ONNX export), each
# against the other side's figure named here: our ONNX Runtime batch-1 latency vs their PyTorch one, and
# our ONNX Runtime beam search (the serving path) vs their PyTorch beam search.
OURS_ONLY = {
    "onnx_fp32": "latency",
    "onnx_int8": "latency",
    "onnx_fp32_beam": "beam",
    "onnx_int8_beam": "beam",
}
# The batch-1 figures printed against the floor (`floor.py`), each with whether its weights are int8.
COMPARE_FLOORS = {"latency": False, "onnx_fp32": False, "onnx_int8": True}
REPLY_PREFIX = "@bench-worker "
# The name these modules get in a worker. Not `hf_seq2seq_attn.benchmark`: there that names the other
# checkout's benchmark (or nothing), and `hf_seq2seq_attn` itself must stay the other checkout's package.
WORKER_PACKAGE = "seq2seq_attn_bench"
# `python -c` program of a worker, given this folder: registers it as the package WORKER_PACKAGE (a bare
# module with this `__path__`: the relative imports between these modules then resolve here, and the
# package's `__init__`, which would import the whole command line, does not run) and calls `worker_main`.
WORKER_BOOT = (
    "import importlib, sys, types; "
    f"package = types.ModuleType({WORKER_PACKAGE!r}); package.__path__ = [sys.argv[1]]; "
    f"sys.modules[{WORKER_PACKAGE!r}] = package; "
    f"sys.exit(importlib.import_module({WORKER_PACKAGE!r} + '.compare').worker_main(sys.argv[2:]))"
)

Seconds = dict[tuple[str, str], list[float]]  # (figure, side) -> seconds of each timed call


def compare_units(workload: Workload) -> dict[str, tuple[int, str]]:
    """Per figure of COMPARE_FIGURES: the work units of one timed call and the figure's unit."""
    units = {
        "train": (workload.batch * workload.tgt_len, "tokens/s"),
        "greedy": (workload.gen_batch * workload.new_tokens, "new_tokens/s"),
        "beam": (workload.beam_batch * workload.new_tokens, "new_tokens/s"),
        "latency": (workload.sentences, "ms/sentence"),
    }
    return units | {figure: units[theirs] for figure, theirs in OURS_ONLY.items()}


def compare_jobs(
    bench: Bench, arch: Arch, figures: Sequence[str], stack: contextlib.ExitStack
) -> dict[str, Callable[[], None]]:
    """The timed call of each of `figures` (names of COMPARE_FIGURES). The PyTorch figures use only the
    stable model API, so the same jobs run against another checkout's package; the ONNX ones (OURS_ONLY)
    export our model into a temporary folder that lives as long as `stack`."""
    work = bench.workload
    vocab = arch.config().vocab_size
    model = bench.ours(arch).eval()
    sentences = bench.ids(work.sentences, work.src_len, vocab)
    jobs: dict[str, Callable[[], None]] = {}
    for figure in figures:
        if figure == "train":
            jobs[figure] = ours_train_step(bench, arch)[0]
        elif figure == "greedy":
            jobs[figure] = generate_fn(model, bench.ids(work.gen_batch, work.src_len, vocab), work.new_tokens)
        elif figure == "beam":
            batch = bench.ids(work.beam_batch, work.src_len, vocab)
            jobs[figure] = generate_fn(model, batch, work.new_tokens, work.num_beams)
        elif figure == "latency":
            jobs[figure] = one_at_a_time_fn(model, sentences, work.new_tokens)
    if onnx_figures := [figure for figure in figures if figure in OURS_ONLY]:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seq2seq-attn-bench-")))
        for backend, runner, _ in onnx_runners(model, folder, torch.get_num_threads()):
            figure = backend.replace("-", "_")  # onnx-fp32 -> onnx_fp32
            if figure in onnx_figures:
                jobs[figure] = one_at_a_time_fn(runner, sentences, work.new_tokens)
            if f"{figure}_beam" in onnx_figures:  # the beam search Loop graph
                batch = bench.ids(work.beam_batch, work.src_len, vocab)
                jobs[f"{figure}_beam"] = generate_fn(runner, batch, work.new_tokens, work.num_beams)
    return jobs


def figure_value(units: float, unit: str, seconds: float) -> float:
    """A compare figure from the seconds of one call: a throughput, or milliseconds per sentence."""
    return 1e3 * seconds / units if unit == "ms/sentence" else units / seconds


# --------------------------------------------------------------------------------------------
# The worker process, and the handle the main process keeps of it
# --------------------------------------------------------------------------------------------
def worker_main(argv: list[str]) -> int:
    """A `--compare_with` worker: reads JSON requests on stdin, answers JSON lines on stdout.

    Started by `Worker` with `PYTHONPATH=<checkout>` so `hf_seq2seq_attn` is that checkout's package. First
    line in: `{"threads", "quick", "warmup", "figures"}`; the worker builds each figure's job, warms it
    up, and answers `{"package": <path>, "versions": ...}`. Then each line `{"figure": name}` is answered
    with `{"seconds": <one timed call>}`; end of input ends the worker.
    """
    del argv
    import hf_seq2seq_attn

    setup = json.loads(sys.stdin.readline())
    torch.set_num_threads(setup["threads"])
    transformers.logging.set_verbosity_error()
    bench = Bench(torch.device("cpu"), 1, setup["warmup"], workload_of(setup["quick"]), baseline=False)
    with contextlib.ExitStack() as stack:
        arch = compare_arch(setup.get("shape", "default"), setup["quick"])
        jobs = compare_jobs(bench, arch, setup["figures"], stack)
        for name in setup["figures"]:
            for _ in range(setup["warmup"]):
                jobs[name]()
        versions = f"torch={torch.__version__} transformers={transformers.__version__}"
        _reply({"package": str(Path(hf_seq2seq_attn.__file__).parent), "versions": versions})
        for line in sys.stdin:
            name = json.loads(line)["figure"]
            _reply({"seconds": time_once(jobs[name])})
    return 0


def _reply(message: dict[str, Any]) -> None:
    print(REPLY_PREFIX + json.dumps(message), flush=True)


class Worker:
    """One side of a side-by-side run: a worker process importing `hf_seq2seq_attn` from `root`.

    Started at construction (both sides import in parallel); `ready()` waits for its set-up.
    """

    def __init__(self, name: str, root: Path, setup: dict[str, Any], python: str = sys.executable):
        self.name = name
        # A file, not a pipe (a full pipe would block the worker); closed in `close`.
        self.stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        paths = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        # cwd=root: `python -c` puts the working directory first on sys.path.
        self.process = subprocess.Popen(
            [python, "-c", WORKER_BOOT, str(Path(__file__).resolve().parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
        self._send(setup)
        self.package = self.versions = ""

    def ready(self) -> None:
        """Wait until the worker has built and warmed up its jobs; `package` is then its package path."""
        reply = self._receive()
        self.package, self.versions = reply["package"], reply.get("versions", "")

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self._send(message)
        return self._receive()

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self._died()

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # skip anything else the other package may print
            if line.startswith(REPLY_PREFIX):
                return json.loads(line[len(REPLY_PREFIX) :])
        self._died()

    def _died(self) -> NoReturn:
        self.process.wait()
        self.stderr.seek(0)
        raise RuntimeError(f"the {self.name} worker stopped: {self.stderr.read().strip()[-1500:]}")

    def close(self) -> None:
        """End the worker (end of input; killed if it has not exited a minute later)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):  # a worker that died
                self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


# --------------------------------------------------------------------------------------------
# The side-by-side run
# --------------------------------------------------------------------------------------------
def package_root() -> Path:
    """The checkout holding this process's `hf_seq2seq_attn` package (our side)."""
    return Path(__file__).resolve().parents[2]


def check_checkout(directory: Path) -> Path:
    """`directory` resolved, or ValueError when it holds no `hf_seq2seq_attn` package."""
    root = directory.expanduser().resolve()
    if not (root / "hf_seq2seq_attn" / "__init__.py").is_file():
        raise ValueError(
            f"--compare_with {directory}: no hf_seq2seq_attn/__init__.py there; pass the root of a checkout, "
            "e.g. one made with `git worktree add /tmp/base036 036bb98`."
        )
    return root


def compare_pairs(figures: Sequence[str], theirs_onnx: bool) -> list[tuple[str, str]]:
    """`(our figure, their figure)` to compare: each figure with its namesake, except that an ONNX figure
    (OURS_ONLY) is compared with their PyTorch latency, and also with their ONNX figure when `theirs_onnx`."""
    pairs = []
    for figure in figures:
        pairs.append((figure, OURS_ONLY.get(figure, figure)))
        if figure in OURS_ONLY and theirs_onnx:
            pairs.append((figure, figure))
    return pairs


def run_compare(
    other: Path,
    figures: list[str],
    threads: int,
    repeats: int,
    warmup: int,
    quick: bool,
    other_python: str = sys.executable,
    shape: str = "default",
) -> dict[str, dict[str, float]]:
    """Time `figures` in two workers (ours, and the package in `other` run by the interpreter
    `other_python`, e.g. of a venv with another transformers), alternating which goes first in each round;
    print one row per side and figure and the ours/theirs ratios; return the medians
    `{figure: {"ours": value, "theirs": value}}`. A figure of OURS_ONLY is compared with the other side's
    figure it names (PyTorch latency or beam search, which is then timed too; `shape` is one of
    `workload.COMPARE_SHAPES`), and, where the other checkout has an ONNX
    export, also with its own ONNX figure (e.g. the same package under two transformers releases)."""
    # Searched for, not looked up at one path: the module may sit in a subfolder of the other checkout's package.
    theirs_onnx = any((other / "hf_seq2seq_attn").rglob("onnx_export.py"))
    pairs = compare_pairs(figures, theirs_onnx)
    plan = {"ours": figures, "theirs": list(dict.fromkeys(theirs for _, theirs in pairs))}
    sides: list[Worker] = []
    try:
        for name, root, python in (("ours", package_root(), sys.executable), ("theirs", other, other_python)):
            setup = {
                "threads": threads,
                "quick": quick,
                "warmup": warmup,
                "figures": plan[name],
                "shape": shape,
            }
            sides.append(Worker(name, root, setup, python))
        for worker in sides:
            worker.ready()
            print(f"compare  {worker.name:<6} package {worker.package}  {worker.versions}")
        seconds = _time_alternating(sides, plan, repeats)
    finally:
        for worker in sides:
            worker.close()
    return _print_comparison(pairs, seconds, compare_units(workload_of(quick)), threads)


def _time_alternating(sides: list[Worker], plan: dict[str, list[str]], repeats: int) -> Seconds:
    """`repeats` timed calls of each figure on each side whose plan has it, one figure at a time; which
    side goes first alternates from figure to figure and from round to round."""
    seconds: Seconds = {(figure, worker.name): [] for worker in sides for figure in plan[worker.name]}
    timed = list(dict.fromkeys(plan["ours"] + plan["theirs"]))
    for round_ in range(repeats):
        for index, figure in enumerate(timed):
            order = sides if (round_ + index) % 2 == 0 else sides[::-1]
            for worker in order:
                if figure in plan[worker.name]:
                    seconds[figure, worker.name].append(worker.request({"figure": figure})["seconds"])
    return seconds


def _print_comparison(
    pairs: list[tuple[str, str]], seconds: Seconds, units: dict[str, tuple[int, str]], threads: int
) -> dict[str, dict[str, float]]:
    """Print each side's median figures (each once) and the ours/theirs ratio of each pair; return the
    values of each of our figures against the first figure of theirs it is paired with."""
    result: dict[str, dict[str, float]] = {}
    printed: set[tuple[str, str]] = set()  # (side, figure): their `latency` row once, not once per ONNX row
    for figure, theirs_figure in pairs:
        count, unit = units[figure]
        values = {
            "ours": figure_value(count, unit, statistics.median(seconds[figure, "ours"])),
            "theirs": figure_value(count, unit, statistics.median(seconds[theirs_figure, "theirs"])),
        }
        result.setdefault(figure, values)  # an ONNX figure: against their PyTorch latency
        for side, name in (("ours", figure), ("theirs", theirs_figure)):
            if (side, name) not in printed:
                printed.add((side, name))
                print(
                    f"compare  {side:<6} {name:<9} threads={threads}  {unit}={fmt(values[side])}", flush=True
                )
        ratio = values["ours"] / values["theirs"]
        better = 1 / ratio if unit == "ms/sentence" else ratio
        label = figure if figure == theirs_figure else f"{figure}/{theirs_figure}"
        print(
            f"ratio    threads={threads}  {label:<9} ours/theirs {unit} {ratio:.3f}  "
            f"(ours {better:.3f}x as fast)",
            flush=True,
        )
    return result


def print_compare_floors(
    bench: Bench, arch: Arch, values: dict[str, dict[str, float]], peaks: Peaks, threads: int
) -> list[str]:
    """The `floor` lines of a side-by-side run, once for both sides (the floor depends on the model shape,
    which both sides share, and on this machine): what a decoder step reads and computes and the peaks,
    then each batch-1 figure of `values` (`run_compare`'s medians, ms/sentence) against the floors."""
    cost = step_cost(bench.ours(arch), bench.workload.src_len)
    lines = [floor_line(threads, arch.name, "decoder step, batch 1", cost_metrics(cost, peaks))]
    rows: dict[str, tuple[float, bool]] = {}  # label -> (ms/sentence, int8)
    for figure, sides in values.items():
        if figure in COMPARE_FLOORS:
            rows[f"{figure} ours"] = (sides["ours"], COMPARE_FLOORS[figure])
            if OURS_ONLY.get(figure, figure) == "latency":  # theirs is their PyTorch latency
                rows["latency theirs"] = (sides["theirs"], False)
    for label, (ms_per_sentence, int8) in rows.items():
        metrics = floor_metrics(ms_per_sentence / bench.workload.new_tokens, cost, peaks, int8)
        lines.append(floor_line(threads, arch.name, label, metrics))
    for line in lines:
        print(line, flush=True)
    return lines
