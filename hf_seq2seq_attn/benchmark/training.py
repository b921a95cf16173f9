"""Training figures: the training-step jobs of our model and d2l's (also timed by `--compare_with`), the
`train` throughput, and the peak memory of one step (`memory`), measured in a fresh process."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .workload import QUICK_WORKLOAD, SEED, Arch, Bench, make_archs

TrainStep = Callable[[Bench, Arch], tuple[Callable[[], None], torch.nn.Module]]


def trainer_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer `Trainer` makes by default (`optim="adamw_torch_fused"`, no weight decay): one fused
    kernel for all parameters. (The unfused `Adam` loops over them op by op: 61 ms a step at 8M parameters on
    one thread, against 13 ms, which no training run with `Trainer` pays.)"""
    return torch.optim.AdamW(model.parameters(), weight_decay=0.0, fused=True)


def ours_train_step(
    bench: Bench, arch: Arch, compile_model: bool = False
) -> tuple[Callable[[], None], torch.nn.Module]:
    """One training step of our model on a fixed random batch (through `torch.compile(model)` with
    `compile_model`), and the model."""
    work, model = bench.workload, bench.ours(arch)
    module = torch.compile(model) if compile_model else model
    vocab = model.config.vocab_size
    input_ids = bench.ids(work.batch, work.src_len, vocab)
    labels = bench.ids(work.batch, work.tgt_len, vocab, seed=SEED + 1)
    attention_mask = torch.ones_like(input_ids)
    optimizer = trainer_optimizer(model)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        optimizer.step()

    return step, model


def d2l_train_step(bench: Bench, arch: Arch) -> tuple[Callable[[], None], torch.nn.Module]:
    """One training step of d2l's model (logits from `forward(src, valid_lens, dec_input)`, mean CE)."""
    work, model = bench.workload, bench.d2l(arch)
    vocab = arch.baseline["tgt_vocab"]
    src = bench.ids(work.batch, work.src_len, vocab)
    labels = bench.ids(work.batch, work.tgt_len, vocab, seed=SEED + 1)
    dec_input = torch.cat([torch.ones_like(labels[:, :1]), labels[:, :-1]], dim=1)  # <s> then shifted labels
    valid_lens = torch.full((work.batch,), work.src_len, device=bench.device)
    optimizer = trainer_optimizer(model)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(src, valid_lens, dec_input)  # (B, T, V)
        F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1)).backward()
        optimizer.step()

    return step, model


def compiled_train_step(bench: Bench, arch: Arch) -> tuple[Callable[[], None], torch.nn.Module]:
    """[`ours_train_step`] through `torch.compile(model)`, as `--torch_compile True` runs it: dynamo's
    `allow_rnn` on (else the RNN modules break the graph), inductor's defaults. The fused training paths step
    aside under compile, so this times the autograd paths as inductor fuses them. One untimed call here
    compiles (minutes on a CPU), so no timed call includes it, whatever `--warmup` says."""
    torch._dynamo.config.allow_rnn = True
    step, model = ours_train_step(bench, arch, compile_model=True)
    step()  # compiles the forward and the backward
    return step, model


def can_compile() -> bool:
    """Inductor on CPU builds C++ kernels: it needs a C++ compiler on PATH."""
    return shutil.which("g++") is not None or shutil.which("c++") is not None


TRAIN_STEPS: dict[str, TrainStep] = {
    "ours": ours_train_step,
    "d2l": d2l_train_step,
    "compiled": compiled_train_step,
}


def bench_train(bench: Bench, arch: Arch, kind: str) -> dict[str, Any]:
    seconds = bench.time(TRAIN_STEPS[kind](bench, arch)[0])
    tokens = bench.workload.batch * bench.workload.tgt_len
    return {"tokens/s": tokens / seconds, "step_ms": 1e3 * seconds}


def memory_step(bench: Bench, arch: Arch, kind: str) -> dict[str, Any]:
    """Peak memory growth over the first training step of a fresh model: gradients, Adam moments
    (both created by that step) and activations, excluding the weights themselves.

    CUDA: `torch.cuda.max_memory_allocated` during the step minus `memory_allocated` before it.
    CPU: torch's CPU allocations are invisible to tracemalloc, so we read the process's resident set.
    A step of a tiny model first loads the code paths (oneDNN, autograd, Adam) once; then the high-water
    mark VmHWM is reset to the current RSS through /proc/self/clear_refs, and the figure is VmHWM after
    the real step minus VmRSS before it (where /proc cannot be written: the `ru_maxrss` growth, which
    misses peaks below earlier ones). Meant for a fresh process (see `measure_memory`), so memory the
    allocator kept from earlier figures cannot be reused unseen.
    """
    make_step = TRAIN_STEPS[kind]
    if bench.device.type == "cpu":
        tiny = next(a for a in make_archs(quick=True) if a.name == arch.name)
        make_step(replace(bench, workload=replace(QUICK_WORKLOAD, batch=1, src_len=2, tgt_len=2)), tiny)[0]()
    step, model = make_step(bench, arch)
    params = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    if bench.device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
        return {"peak_MiB": peak, "params_MiB": params, "method": "cuda-max-allocated"}
    try:
        rss_before = _proc_status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        step()
        peak, method = (_proc_status_kib("VmHWM") - rss_before) / 1024, "rss-high-water-reset"
    except OSError:
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        step()
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before) / 1024
        method = "ru_maxrss-growth"
    return {"peak_MiB": peak, "params_MiB": params, "method": method}


def _proc_status_kib(field: str) -> int:
    """A `kB` field of /proc/self/status (Linux); OSError elsewhere."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def measure_memory(bench: Bench, arch: Arch, kind: str, threads: int, quick: bool) -> dict[str, Any] | None:
    """`memory_step` in a fresh subprocess on CPU (in-process on CUDA, and with `quick`, where the
    figure is only a smoke test and a fresh interpreter would cost more than the rest); None with a
    note on failure. The subprocess is this command's `--memory-child` mode (`modes.memory_child`)."""
    if bench.device.type == "cuda" or quick:
        return memory_step(bench, arch, kind)
    command = [sys.executable, "-m", "hf_seq2seq_attn.benchmark", "--memory-child", f"{kind}:{arch.name}"]
    command += ["--threads", str(threads), "--device", "cpu"] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"note: memory probe for {kind}/{arch.name} failed: {done.stderr.strip()[-500:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])
