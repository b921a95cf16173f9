"""The data section of the benchmark (`seq2seq-attn benchmark --data`): what a corpus's size costs before
training starts, measured with `seq2seq-attn train --max_steps 10` on synthetic corpora.

Figures, one printed row per corpus size and side (ours; with `--compare_with DIR`, also "today": the
train command of the checkout in DIR, e.g. the last commit, whose reader builds Python lists):
    data      peak_rss_mib     the train process's peak resident memory (`ru_maxrss`, what
                               `/usr/bin/time -v` calls "Maximum resident set size")
              first_step_s     seconds from starting the command to the end of its first training step
              total_s          seconds until the command exits
              warm_*           ours only: the same command run again (a new output folder, the same
                               cache), which reuses the Arrow files, tokenizer and token ids of the first
    tokenize  pairs/s          `tokenize_pairs` on the first `--data_tokenize_pairs` pairs, in a fresh
                               process, with the tokenizer the first run trained (the same on both
                               sides): the median of `TOKENIZE_ROUNDS` (5) runs per side, the sides
                               taking turns
then ratios from those rows: ours' peak memory at each size over its smallest size's, cold/warm time to the
first step, and today/ours at the sizes both sides ran.

Corpora: `--data_pairs` sizes (default 1M and 4M), JSON Lines of ~20 words a side drawn from two
synthetic 5,000-word vocabularies (Zipf frequencies), written into a temporary folder (or `--data_dir`,
kept for later runs) and deleted at the end. Today's reader holds the corpus as Python lists, several GB
per million pairs, so it runs at its own sizes (`--data_baseline_pairs`, default 250k and 500k: 1M took
13.6 GB when the issue was filed, more than a shared 24 GB machine should give one process).

Each size gets its own `HF_DATASETS_CACHE` inside the work folder: the first run of a size is cold, the
second finds what the first cached; nothing reaches the user's cache.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compare import package_root
from .options import DEFAULT_BASELINE_PAIRS, DEFAULT_TOKENIZE_PAIRS

TOKENIZE_ROUNDS = 5
VOCABULARY = 5_000  # words per side
WORDS_PER_SIDE = (15, 26)  # [low, high) words in a sentence: ~20
SYLLABLES = ("ka", "lo", "mi", "ne", "tu", "ra", "si", "po", "de", "fa", "gu", "hi", "jo", "ve", "zu", "ber",
             "cha", "dri", "ens", "ol", "mar", "ti", "qua", "lun")  # fmt: skip
# What `train` does in every run: 10 steps of the default model, nothing saved or evaluated, every step logged
# (unbuffered, so the first `{'loss': ...}` line dates the end of the first step).
TRAIN_FLAGS = ("--max_steps", "10", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
               "--num_attention_plots", "0", "--test_num_beams", "1", "--logging_steps", "1",
               "--disable_tqdm", "True")  # fmt: skip


def vocabulary(rng: np.random.Generator, size: int, suffix: str) -> np.ndarray:
    """`size` distinct pseudo-words of 1-3 syllables (plus `suffix`, so the two sides' words differ)."""
    words: set[str] = set()
    while len(words) < size:
        count = int(rng.integers(1, 4))
        words.add("".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), count)) + suffix)
    return np.array(sorted(words))


def write_corpus(path: Path, pairs: int, seed: int = 0) -> None:
    """A JSON Lines corpus of `pairs` synthetic pairs, the target a word-by-word "translation" reversed.

    Words follow Zipf's law, as in real text, so a BPE tokenizer learns merges and sentences vary in length.
    """
    rng = np.random.default_rng(seed)
    sources, targets = vocabulary(rng, VOCABULARY, ""), vocabulary(rng, VOCABULARY, "s")
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    weights /= weights.sum()
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as out:
        for start in range(0, pairs, 10_000):
            rows = min(10_000, pairs - start)
            lengths = rng.integers(*WORDS_PER_SIDE, rows)
            words = rng.choice(VOCABULARY, (rows, WORDS_PER_SIDE[1]), p=weights)
            lines = []
            for ids, length in zip(words, lengths, strict=True):
                ids = ids[:length]
                # ASCII letters only: no JSON escaping needed.
                source, target = " ".join(sources[ids]), " ".join(targets[ids[::-1]])
                lines.append(f'{{"source": "{source}", "target": "{target}"}}\n')
            out.writelines(lines)
    temporary.replace(path)


def corpus(folder: Path, pairs: int) -> Path:
    """The corpus of `pairs` pairs in `folder`, written unless an earlier run left it there."""
    path = folder / f"corpus-{pairs}.jsonl"
    if not path.exists():
        write_corpus(path, pairs)
    return path


@dataclass
class TrainRun:
    """One `train` command's figures."""

    peak_rss_mib: float
    first_step_s: float
    total_s: float


def run_train(root: Path, train_file: Path, output_dir: Path, cache: Path) -> TrainRun:
    """Run `python -m hf_seq2seq_attn train` of the package in `root`, timing its first training step.

    Torch gets one thread (`OMP_NUM_THREADS=1`): the figure includes one training step, and a two-thread step
    on a busy two-core machine can take seconds instead of a tenth of one (OpenMP threads spin at barriers).

    Raises:
        RuntimeError: the command failed (its last output lines attached).
    """
    env = {**_package_env(root, cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "hf_seq2seq_attn", "train", "--train_file", str(train_file),
               "--output_dir", str(output_dir), *TRAIN_FLAGS]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first_step: list[float] = []
    tail: list[str] = []

    def watch() -> None:  # a thread: the pipe must be drained while the command runs
        assert process.stdout is not None
        for line in process.stdout:
            if not first_step and line.startswith("{'loss'"):
                first_step.append(time.perf_counter() - started)
            tail[:] = [*tail[-30:], line]

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory, not the benchmark's
    total = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    if process.returncode != 0 or not first_step:
        raise RuntimeError(f"train in {root} failed (exit {process.returncode}):\n{''.join(tail)}")
    return TrainRun(peak_rss_mib=usage.ru_maxrss / 1024, first_step_s=first_step[0], total_s=total)


# Run by either checkout's package: today's reads lists (no `corpus` module), ours an Arrow corpus.
TOKENIZE_PROBE = """
import json, sys, time
from hf_seq2seq_attn import data
from hf_seq2seq_attn.tokenization_seq2seq_attn import load_tokenizer
path, tokenizer_dir = sys.argv[1:3]
tokenizer = load_tokenizer(tokenizer_dir)
tokenizer(["warm up"], text_target=["warm up"])  # one-time set-up (thread pool, lazy imports) is not the rate
try:
    from hf_seq2seq_attn.corpus import read_arrow_pairs
    pairs = read_arrow_pairs(path, ("source", "target", None, None))
except ImportError:
    pairs = data.read_parallel(path)
start = time.perf_counter()
data.tokenize_pairs(pairs, tokenizer, 128, 128)
print(json.dumps({"pairs": len(pairs), "seconds": time.perf_counter() - start}))
"""


def tokenize_rate(root: Path, train_file: Path, tokenizer_dir: Path, cache: Path) -> float:
    """Pairs per second of `tokenize_pairs` in the package in `root` (reading the file is not timed)."""
    result = subprocess.run(
        [sys.executable, "-c", TOKENIZE_PROBE, str(train_file), str(tokenizer_dir)],
        cwd=root,
        env=_package_env(root, cache),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"tokenizing in {root} failed:\n{result.stderr[-3000:]}")
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    return reply["pairs"] / reply["seconds"]


def tokenize_rates(
    roots: dict[str, Path], train_file: Path, tokenizer_dir: Path, work: Path
) -> dict[str, float]:
    """The median of `TOKENIZE_ROUNDS` pairs/s figures per side, the sides taking turns (load on a shared
    machine comes and goes: taking turns spreads it over both), each run with a fresh cache."""
    rates: dict[str, list[float]] = {side: [] for side in roots}
    for round_ in range(TOKENIZE_ROUNDS):
        for side, root in roots.items():
            cache = work / f"cache-tokenize-{side}-{round_}"
            rates[side].append(tokenize_rate(root, train_file, tokenizer_dir, cache))
            shutil.rmtree(cache, ignore_errors=True)
    return {side: statistics.median(values) for side, values in rates.items()}


def _package_env(root: Path, cache: Path) -> dict[str, str]:
    """The environment of a command that imports `hf_seq2seq_attn` from `root` and caches under `cache`."""
    paths = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "HF_DATASETS_CACHE": str(cache),
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip


def head_file(source: Path, target: Path, lines: int) -> Path:
    """The first `lines` lines of `source`, written to `target`."""
    with source.open(encoding="utf-8") as handle, target.open("w", encoding="utf-8") as out:
        for _, line in zip(range(lines), handle, strict=False):
            out.write(line)
    return target


def _row(figure: str, side: str, pairs: int | str, values: dict[str, float]) -> None:
    text = "  ".join(
        f"{key}={value:.3g}" if value < 100 else f"{key}={value:.0f}" for key, value in values.items()
    )
    print(f"{figure:<9}{side:<7}{pairs!s:<9}{text}", flush=True)


def _ratio(label: str, value: float) -> None:
    print(f"ratio    {label:<58} {value:8.3f}", flush=True)


def run_data_section(
    sizes: Sequence[int],
    baseline: Path | None = None,
    baseline_sizes: Sequence[int] = DEFAULT_BASELINE_PAIRS,
    tokenize_pairs: int = DEFAULT_TOKENIZE_PAIRS,
    data_dir: Path | None = None,
) -> dict[tuple[str, int], TrainRun]:
    """Measure and print the data section; returns `{("ours" | "ours-warm" | "today", pairs): figures}`.

    Args:
        sizes: corpus sizes (pairs) our train command runs at, each twice (cold, then warm).
        baseline: the root of another checkout ("today's reader"); its train command runs once per size in
            `baseline_sizes`, and ours runs at those sizes too, for like-for-like ratios.
        data_dir: keep the corpora there (and reuse them next time) instead of a temporary folder.
    """
    runs: dict[tuple[str, int], TrainRun] = {}
    ours_root = package_root()
    ours_sizes = sorted({*sizes, *(baseline_sizes if baseline is not None else ())})
    with _work_folder(data_dir) as (work, corpora):
        print(f"data: `train {' '.join(TRAIN_FLAGS)}` on synthetic corpora of ~20 words a side in {corpora}")
        for pairs in ours_sizes:
            train_file = corpus(corpora, pairs)
            cache = work / f"cache-{pairs}"
            cold = runs["ours", pairs] = run_train(ours_root, train_file, work / f"ours-{pairs}", cache)
            warm = runs["ours-warm", pairs] = run_train(ours_root, train_file, work / f"warm-{pairs}", cache)
            _row("data", "ours", pairs, {**vars(cold), **{f"warm_{k}": v for k, v in vars(warm).items()}})
            shutil.rmtree(cache)  # GBs at millions of pairs; the warm run has used it
        for pairs in sorted(baseline_sizes) if baseline is not None else ():
            assert baseline is not None
            train_file = corpus(corpora, pairs)
            today = runs["today", pairs] = run_train(
                baseline, train_file, work / f"today-{pairs}", work / "cache"
            )
            _row("data", "today", pairs, vars(today))
        sample = head_file(corpus(corpora, ours_sizes[0]), work / "sample.jsonl", tokenize_pairs)
        tokenizer_dir = work / f"ours-{ours_sizes[0]}"
        roots = {"ours": ours_root, **({"today": baseline} if baseline is not None else {})}
        rates = tokenize_rates(roots, sample, tokenizer_dir, work)
        for side, rate in rates.items():
            _row("tokenize", side, min(tokenize_pairs, ours_sizes[0]), {"pairs/s": rate})
    _print_ratios(runs, rates)
    return runs


def _print_ratios(runs: dict[tuple[str, int], TrainRun], rates: dict[str, float]) -> None:
    """The ratios of the rows printed above (all measured in this run)."""
    ours = sorted(pairs for side, pairs in runs if side == "ours")
    for smaller, larger in itertools.pairwise(ours):
        growth = runs["ours", larger].peak_rss_mib / runs["ours", smaller].peak_rss_mib
        _ratio(f"data ours peak RSS {larger}/{smaller} pairs", growth)
    for pairs in ours:
        speedup = runs["ours", pairs].first_step_s / runs["ours-warm", pairs].first_step_s
        _ratio(f"data ours first step cold/warm, {pairs} pairs", speedup)
    for pairs in sorted(pairs for side, pairs in runs if side == "today"):
        today, mine = runs["today", pairs], runs["ours", pairs]
        _ratio(f"data today/ours peak RSS, {pairs} pairs", today.peak_rss_mib / mine.peak_rss_mib)
        _ratio(f"data today/ours first step (cold), {pairs} pairs", today.first_step_s / mine.first_step_s)
    if "today" in rates:
        _ratio("tokenize ours/today pairs/s", rates["ours"] / rates["today"])


@contextlib.contextmanager
def _work_folder(data_dir: Path | None) -> Iterator[tuple[Path, Path]]:
    """`(work, corpora)`: a temporary folder for outputs and caches, and where the corpora live."""
    work = Path(tempfile.mkdtemp(prefix="seq2seq-attn-data-"))
    try:
        corpora = data_dir if data_dir is not None else work
        corpora.mkdir(parents=True, exist_ok=True)
        yield work, corpora
    finally:
        shutil.rmtree(work, ignore_errors=True)
