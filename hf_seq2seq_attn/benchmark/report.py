"""What every mode prints besides its figures: the number format and the header lines (machine, versions,
workload, architectures)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import transformers

# Absolute, not relative: see `workload.py`.
from hf_seq2seq_attn import Seq2SeqAttnConfig

from .flops import ModelSizes
from .workload import Arch, Workload


def fmt(value: object) -> str:
    """A figure as printed: 3 significant digits, or a whole number from 100 up."""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def device_name(device: torch.device) -> str:
    """`cuda (<GPU name>)`, or `cpu (<CPU model>, <n> logical cores)`."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"cpu ({model}, {os.cpu_count()} logical cores)"


def describe_ours(config: Seq2SeqAttnConfig) -> str:
    sizes = ModelSizes.of(config)
    bi = "bi" if sizes.directions == 2 else ""
    rnn = config.rnn_type.upper()
    return (
        f"enc={bi}{rnn}{sizes.encoder_hidden}x{sizes.encoder_layers} dec={rnn}{sizes.hidden}x{sizes.layers} "
        f"att={config.attention_type}/{sizes.attention}x{sizes.heads}heads style={config.decoder_style} "
        f"bridge={config.bridge} readout={sizes.embedding} E={sizes.embedding} V={sizes.vocab}"
    )


def describe_baseline(kwargs: dict[str, Any]) -> str:
    bi = "bi" if kwargs["bidirectional"] else ""
    hidden, layers = kwargs["num_hiddens"], kwargs["num_layers"]
    bridge = "linear" if kwargs["bidirectional"] else "copy"
    return (
        f"enc={bi}GRU{hidden}x{layers} dec=GRU{hidden}x{layers} att=additive/{hidden} (keys re-projected "
        f"every step) bridge={bridge} readout=none E={kwargs['embed_size']} V={kwargs['tgt_vocab']}"
    )


def _date() -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z")


def print_header(
    device: torch.device, repeats: int, warmup: int, workload: Workload, archs: list[Arch], baseline: bool
) -> None:
    """The machine, versions and timing settings, the workload, and each architecture (and d2l's)."""
    print(
        f"device={device_name(device)}  torch={torch.__version__}  transformers={transformers.__version__}  "
        f"repeats={repeats} (median)  warmup={warmup}  date={_date()}"
    )
    print(
        f"workload: train batch={workload.batch} src_len={workload.src_len} tgt_len={workload.tgt_len}; "
        f"greedy batch={workload.gen_batch}; beam batch={workload.beam_batch} beams={workload.num_beams}; "
        f"{workload.new_tokens} new tokens forced; one-at-a-time loops over {workload.sentences} sentences"
    )
    for arch in archs:
        print(f"arch     ours      {arch.name:<8} {describe_ours(arch.config())}")
        if baseline:
            print(f"arch     d2l       {arch.name:<8} {describe_baseline(arch.baseline)}")


def print_data_header() -> None:
    """The header of the data section: the machine and versions (its commands run on the CPU)."""
    print(
        f"device={device_name(torch.device('cpu'))}  torch={torch.__version__}  "
        f"transformers={transformers.__version__}  date={_date()}"
    )
