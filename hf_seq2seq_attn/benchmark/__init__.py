"""Speed benchmark: throughput, latency, memory and FLOP utilisation, against the textbook baseline,
other backends (ONNX Runtime) and another checkout of this package (`seq2seq-attn benchmark`).

Figures, one printed line each (medians over `--repeats` timed calls after `--warmup` untimed ones):
    matmul    fp32 `torch.mm` GFLOP/s of this machine at this thread count (best of the sizes' medians)
    bandwidth memory read GB/s at this thread count: the best of a few sums of an array well beyond the
              last-level cache (`floor.bench_bandwidth`)
    train     target tokens/s of one training step: forward + loss + backward + Adam step
    mfu       our achieved model FLOP/s in training / the matmul peak (FLOPs from `train_flops_per_step`)
    greedy    new tokens/s of greedy `generate()` on a batch (ours) vs d2l's one-sentence-at-a-time loop
    beam      new tokens/s of beam search (5 beams) and its cost per sentence / greedy's, same batch
    latency   ms to translate one sentence (batch 1, greedy, fixed length)
    step      ms per generated token: a bare loop of decoder steps vs `generate()`, and their ratio
    memory    peak memory growth over one training step (how: see `training.memory_step`)
    backends  PyTorch fp32, ONNX fp32 and ONNX int8: batch-1 latency, batch-`gen_batch` greedy and
              beam throughput, model file size, and each ONNX figure's ratio to PyTorch's (same run,
              the three backends timed in alternation); skipped with a note without `onnxruntime`

After the `ratio` lines, `floor` lines put each batch-1 figure (`latency`, the ONNX backends' batch-1 latency)
against the machine's limit (`floor.py`): what one decoder step must read (its weights, fp32 or int8, and the
keys and values of one source) / `bandwidth`, and its FLOPs / `matmul`, in ms per token, and the measured
ms per token as a multiple of the larger floor (`x_floor`).

With `--compare_with DIR` the benchmark instead runs `train`, `greedy`, `beam` and `latency` of our
model side by side with the same figures of the package found in DIR (another checkout), each side in
its own worker process, alternating the timed calls so machine noise hits both alike, and prints
ours/theirs ratios; `onnx_fp32` and `onnx_int8` time our ONNX Runtime batch-1 latency against the
other checkout's PyTorch `latency` (skipped with a note without `onnxruntime`). The batch-1 figures of both
sides get `floor` lines, printed once (one model shape, one machine; the peaks measured before the workers start).

With `--data` it instead runs the data section (`data.py`): peak memory and time to the first
training step of `seq2seq-attn train --max_steps 10` on synthetic corpora of `--data_pairs` pairs (cold, then
warm from the cache), tokenization pairs/s, and with `--compare_with DIR` the same of DIR's train command
("today's reader") at `--data_baseline_pairs`.

Inputs are random ids from a fixed seed, all sources and targets of the same length (no padding).
Untrained models would emit `</s>` at once, so every decode is forced to a fixed number of new tokens:
our models get a `</s>` logit bias no score can overcome (`workload.never_ending`), so `generate()` runs as
in real use, checking for `</s>` every step, without the `min_new_tokens` logits processors real use does
not have; d2l's `greedy_one` gets an end id that never occurs. The architectures (the default shape and
d2l's own) are described in `workload.make_archs`; the baseline is `reference_d2l.py` (the d2l.ai
textbook model). The project's speed targets live in the README; this package only measures.

Modules, in the order a run uses them:
    cli.py            the command line: `main` parses (argparse only) and hands over to `modes.run`
    options.py        the options and the figure tables (no torch: `--help` is instant)
    modes.py          one function per mode: figures, `--compare_with`, `--data`, `--memory-child`
    workload.py       batch shapes, the two architectures, `Bench` (device, timing settings, models, ids)
    timing.py         median wall-clock time of a call, alone or in alternation with others
    flops.py          analytic FLOP count from a config, the matmul peak and MFU figures
    floor.py          bytes and FLOPs of one batch-1 decoder step, memory bandwidth, the floor lines' figures
    training.py       training-step jobs and the train and memory figures
    generation.py     generation jobs and the greedy, beam, latency and step figures
    backends.py       PyTorch fp32 vs ONNX Runtime fp32 / int8 (needs the [onnx] extra)
    figures.py        the normal run: every selected figure in order, then the ratio lines
    compare.py        `--compare_with`: the two worker processes and the ours/theirs ratios
    data.py           `--data`: memory and time to the first step of the train command
    report.py         number format and the header lines
    reference_d2l.py  the textbook baseline (credited there)

Every module imports the model as `from hf_seq2seq_attn import ...` (absolute) and its siblings relatively,
so that a `--compare_with` worker can load these modules under another name beside another checkout's
`hf_seq2seq_attn` (see `compare.WORKER_BOOT`).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that holds it; loaded on first use, so `seq2seq-attn benchmark --help` (which needs
# only `cli` and `options`) does not import torch.
_NAMES = {
    "BACKENDS": "backends",
    "COMPARE_FIGURES": "options",
    "FIGURES": "options",
    "ModelSizes": "flops",
    "Workload": "workload",
    "build_parser": "options",
    "forward_flops": "flops",
    "main": "cli",
    "run_compare": "compare",
    "time_interleaved": "timing",
    "train_flops_per_step": "flops",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
