"""Speed benchmark: throughput, latency, memory and FLOP utilisation, against the textbook baseline,
other backends (ONNX Runtime) and another checkout of this package.

Figures, one printed line each (medians over `--repeats` timed calls after `--warmup` untimed ones):
    matmul    fp32 `torch.mm` GFLOP/s of this machine at this thread count (best of the sizes' medians)
    train     target tokens/s of one training step: forward + loss + backward + Adam step
    mfu       our achieved model FLOP/s in training / the matmul peak (FLOPs from `train_flops_per_step`)
    greedy    new tokens/s of greedy `generate()` on a batch (ours) vs d2l's one-sentence-at-a-time loop
    beam      new tokens/s of beam search (5 beams) and its cost per sentence / greedy's, same batch
    latency   ms to translate one sentence (batch 1, greedy, fixed length)
    step      ms per generated token: a bare loop of decoder steps vs `generate()`, and their ratio
    memory    peak memory growth over one training step (how: see `memory_step`)
    backends  PyTorch fp32, ONNX fp32 and ONNX int8: batch-1 latency, batch-`gen_batch` greedy and
              beam throughput, model file size, and each ONNX figure's ratio to PyTorch's (same run,
              the three backends timed in alternation); skipped with a note without `onnxruntime`

With `--compare_with DIR` the benchmark instead runs `train`, `greedy`, `beam` and `latency` of our
model side by side with the same figures of the package found in DIR (another checkout), each side in
its own worker process, alternating the timed calls so machine noise hits both alike, and prints
ours/theirs ratios; `onnx_fp32` and `onnx_int8` time our ONNX Runtime batch-1 latency against the
other checkout's PyTorch `latency` (skipped with a note without `onnxruntime`).

With `--data` it instead runs the data section (`benchmark_data.py`): peak memory and time to the first
training step of `seq2seq-attn train --max_steps 10` on synthetic corpora of `--data_pairs` pairs (cold, then
warm from the cache), tokenization pairs/s, and with `--compare_with DIR` the same of DIR's train command
("today's reader") at `--data_baseline_pairs`.

Inputs are random ids from a fixed seed, all sources and targets of the same length (no padding).
Untrained models would emit `</s>` at once, so every decode is forced to a fixed number of new tokens:
our models get a `</s>` logit bias no score can overcome (`never_ending`), so `generate()` runs as in
real use, checking for `</s>` every step, without the `min_new_tokens` logits processors real use does
not have; d2l's `greedy_one` gets an end id that never occurs.

Architectures (each row names its own; see `make_archs`):
    default  ours: biGRU 256/direction encoder, GRU 512 decoder, E 256, V 8000, additive attention.
             d2l: one `num_hiddens` for encoder and decoder, so it cannot express 256/direction
             with a 512 decoder. We give it num_hiddens=256 bidirectional: the encoder matches ours
             exactly, the decoder is half as wide and it has no read-out layer, so it does ~0.7x our
             model FLOPs per token and our speed-up ratio is a lower bound. (num_hiddens=512 would
             give it a 512/direction encoder and ~1.8x our FLOPs, flattering us.)
    d2l      d2l's own: unidirectional 2-layer GRU encoder and decoder, hidden 512, E 256, and ours at
             the same shape (plus our linear bridge and read-out layer, which d2l lacks).

The baseline is `hf_seq2seq_attn.reference_d2l` (the d2l.ai textbook model, shipped in the package).
The project's speed targets live in the README; this module only measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, Any, NoReturn

import torch
import torch.nn.functional as F
import transformers

# Absolute, not relative: `--compare_with` runs this file as a plain script in a worker whose
# `hf_seq2seq_attn` is the other checkout's package (see `worker_main`).
from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration

FIGURES = ("matmul", "train", "mfu", "greedy", "beam", "latency", "step", "memory", "backends")
COMPARE_FIGURES = ("train", "greedy", "beam", "latency", "onnx_fp32", "onnx_int8")
# `--compare_with` figures timed on our side only (the other checkout may have no ONNX export), each
# against the other side's figure named here: our ONNX Runtime batch-1 latency vs their PyTorch one.
OURS_ONLY = {"onnx_fp32": "latency", "onnx_int8": "latency"}
NEEDS = {"mfu": ("train", "matmul")}  # figures computed from other figures
SEED = 0
FIRST_ID = 4  # ids below are <pad> <s> </s> <unk>
D2L_NEVER_EOS = -1  # an end id d2l's greedy_one never produces, so it decodes the full length
# The `</s>` logit bias of our benchmark models: random weights give logits of a few units, so `</s>`
# never wins an argmax or a beam (finite, so int8 export and log-softmax stay ordinary arithmetic).
NEVER_LOGIT = -1e4
ONNX_HINT = "pip install 'hf_seq2seq_attn[onnx]'"

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


# --------------------------------------------------------------------------------------------
# Workload and architectures
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """Batch shapes of every figure."""

    batch: int = 64  # training batch
    src_len: int = 30
    tgt_len: int = 30
    gen_batch: int = 64  # greedy throughput; beam throughput of the backends rows
    beam_batch: int = 16  # beam search and its greedy comparison (`beam` figure)
    num_beams: int = 5
    new_tokens: int = 30  # generated tokens per sentence, forced
    sentences: int = 8  # sentences per timed call of the one-at-a-time loops (latency, d2l greedy)
    matmul_sizes: tuple[int, ...] = (1024, 2048)
    memory_archs: tuple[str, ...] = ("default", "d2l")  # one fresh process each, ~4 s of imports


QUICK_WORKLOAD = Workload(
    batch=4,
    src_len=6,
    tgt_len=6,
    gen_batch=4,
    beam_batch=2,
    new_tokens=5,
    sentences=2,
    matmul_sizes=(64, 128),
    memory_archs=("default",),
)


@dataclass(frozen=True)
class Arch:
    """One architecture as our config keywords and as `RefSeq2Seq` constructor arguments."""

    name: str
    ours: dict[str, Any]
    baseline: dict[str, Any]

    def config(self) -> Seq2SeqAttnConfig:
        return Seq2SeqAttnConfig(**self.ours)


def make_archs(quick: bool) -> list[Arch]:
    """The default shape and d2l's own shape (tiny versions of both with `quick`)."""
    vocab, emb, enc, dec = (64, 8, 8, 16) if quick else (8000, 256, 256, 512)
    common = {"embedding_dropout": 0.0, "readout_dropout": 0.0, "attention_type": "additive"}
    default = Arch(
        "default",
        ours=dict(
            vocab_size=vocab, embedding_size=emb, encoder_hidden_size=enc, decoder_hidden_size=dec, **common
        ),
        baseline=dict(
            src_vocab=vocab,
            tgt_vocab=vocab,
            embed_size=emb,
            num_hiddens=enc,
            num_layers=1,
            bidirectional=True,
        ),
    )
    d2l = Arch(
        "d2l",
        ours=dict(
            vocab_size=vocab,
            embedding_size=emb,
            encoder_hidden_size=dec,
            decoder_hidden_size=dec,
            encoder_layers=2,
            decoder_layers=2,
            bidirectional=False,
            bridge="linear",
            **common,
        ),
        baseline=dict(
            src_vocab=vocab,
            tgt_vocab=vocab,
            embed_size=emb,
            num_hiddens=dec,
            num_layers=2,
            bidirectional=False,
        ),
    )
    return [default, d2l]


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


# --------------------------------------------------------------------------------------------
# FLOP counting
# --------------------------------------------------------------------------------------------
GATES = {"gru": 3, "lstm": 4, "rnn": 1}  # gate blocks per RNN cell: G = gates x hidden


@dataclass(frozen=True)
class ModelSizes:
    """The widths FLOPs depend on, in the modeling file's legend."""

    embedding: int  # E
    encoder_hidden: int  # per direction
    directions: int  # 2 when bidirectional
    encoder_layers: int
    key: int  # K = directions x encoder_hidden
    hidden: int  # H
    layers: int  # L, decoder layers
    attention: int  # A
    heads: int  # N
    vocab: int  # V, target vocabulary
    gates: int  # 3 GRU, 4 LSTM, 1 tanh RNN
    score: str  # attention_type
    style: str  # "bahdanau", "luong" or "luong+feeding"

    @classmethod
    def of(cls, config: Seq2SeqAttnConfig) -> ModelSizes:
        directions = 2 if config.bidirectional else 1
        feeding = config.decoder_style == "luong" and bool(getattr(config, "input_feeding", False))
        return cls(
            embedding=config.embedding_size,
            encoder_hidden=config.encoder_hidden_size,
            directions=directions,
            encoder_layers=config.encoder_layers,
            key=directions * config.encoder_hidden_size,
            hidden=config.decoder_hidden_size,
            layers=config.decoder_layers,
            attention=getattr(config, "attention_size", None) or config.decoder_hidden_size,
            heads=config.num_attention_heads,
            vocab=getattr(config, "decoder_vocab_size", None) or config.vocab_size,
            gates=GATES[config.rnn_type],
            score=config.attention_type,
            style="luong+feeding" if feeding else config.decoder_style,
        )


def rnn_flops(gates: int, hidden: int, inputs: int) -> int:
    """One RNN cell step for one sequence: input and recurrent projections `2 * G * (in + hidden)`."""
    return 2 * gates * hidden * (inputs + hidden)


def encoder_flops_per_token(sizes: ModelSizes) -> int:
    """Every encoder layer and direction, per source token."""
    total = 0
    for layer in range(sizes.encoder_layers):
        inputs = sizes.embedding if layer == 0 else sizes.key
        total += sizes.directions * rnn_flops(sizes.gates, sizes.encoder_hidden, inputs)
    return total


def key_flops_per_token(sizes: ModelSizes) -> int:
    """Projection of keys (and values) once per source token (`project_keys`)."""
    if sizes.heads == 1:
        return {"additive": 2 * sizes.key * sizes.attention, "general": 2 * sizes.key * sizes.hidden}.get(
            sizes.score, 0
        )  # dot / scaled_dot use the raw encoder states
    keys_and_values = 2 * 2 * sizes.key * sizes.attention
    head_dim = sizes.attention // sizes.heads
    bilinear = 2 * sizes.attention * head_dim if sizes.score == "general" else 0  # W_n k_n per head
    return keys_and_values + bilinear


def attention_flops_per_query(sizes: ModelSizes, src_len: int) -> int:
    """One decoder query against `src_len` prepared keys: query projection, scores, context, W_O."""
    if sizes.heads == 1:
        query = 2 * sizes.hidden * sizes.attention if sizes.score == "additive" else 0
        width = {"additive": sizes.attention, "general": sizes.hidden}.get(sizes.score, sizes.key)
        return query + 2 * src_len * width + 2 * src_len * sizes.key
    query, output = 2 * sizes.hidden * sizes.attention, 2 * sizes.attention * sizes.key
    return query + 2 * src_len * sizes.attention + 2 * src_len * sizes.attention + output


def decoder_step_flops(sizes: ModelSizes, src_len: int) -> int:
    """One target step: attention, decoder RNN (all layers), read-out and vocabulary projection."""
    emb, hid, key = sizes.embedding, sizes.hidden, sizes.key
    rnn_input = {"bahdanau": emb + key, "luong": emb, "luong+feeding": 2 * emb}[sizes.style]
    rnn = rnn_flops(sizes.gates, hid, rnn_input) + (sizes.layers - 1) * rnn_flops(sizes.gates, hid, hid)
    readout_input = hid + key + emb if sizes.style == "bahdanau" else key + hid
    return attention_flops_per_query(sizes, src_len) + rnn + 2 * readout_input * emb + 2 * emb * sizes.vocab


def forward_flops(
    config: Seq2SeqAttnConfig, batch: int, src_len: int, tgt_len: int, source_tokens: int | None = None
) -> int:
    """Matmul FLOPs (2 per multiply-add) of one teacher-forced forward pass, counted from the config.

    Valid for every `rnn_type`, `attention_type`, head count, `decoder_style` (with or without input
    feeding), bidirectional or not, any layer counts, either bridge, tied or untied embeddings (tying
    shares weights, not work). It counts what `torch.utils.flop_counter.FlopCounterMode` counts, so the
    two agree exactly (a test checks every variant): matrix products only (`mm`, `addmm`, `bmm`, the
    matmuls inside `einsum` and RNN cells), `2 * M * N * K` each. Not counted, as by FlopCounterMode:
    embeddings, gate nonlinearities, biases, tanh / softmax / masking of the attention, the loss.

    Counted, per the legend of the modeling file (G = gates x width, 3H for a GRU):
        encoder     per real source token, layer and direction: `2*G_e*(in + H_e)`
        keys        per source position: the key (and value) projections done once per source
        bridge      per sentence `2*K*L*H` (`bridge="linear"`)
        per target step: attention (query projection, scores `2*S*D` per head, context, W_O with
                    heads), decoder RNN over all layers, read-out, vocabulary projection `2*E*V`

    Args:
        batch, src_len, tgt_len: a batch of `batch` sources of `src_len` positions and targets of
            `tgt_len` tokens.
        source_tokens: real (unpadded) source tokens in a right-padded batch; the packed encoder RNN
            runs over those only, while the attention still spans all `src_len` positions. Default:
            `batch * src_len` (no padding).
    """
    sizes = ModelSizes.of(config)
    source_tokens = batch * src_len if source_tokens is None else source_tokens
    bridge = 2 * sizes.key * sizes.layers * sizes.hidden if config.bridge == "linear" else 0
    return (
        source_tokens * encoder_flops_per_token(sizes)
        + batch * src_len * key_flops_per_token(sizes)
        + batch * bridge
        + batch * tgt_len * decoder_step_flops(sizes, src_len)
    )


def train_flops_per_step(config: Seq2SeqAttnConfig, batch: int, src_len: int, tgt_len: int) -> int:
    """Model FLOPs of one training step: forward + backward, backward counted as 2x forward."""
    return 3 * forward_flops(config, batch, src_len, tgt_len)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def time_it(
    fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None] | None = None
) -> float:
    """Median wall-clock seconds of `repeats` calls of `fn`, after `warmup` untimed calls.

    `sync` (e.g. `torch.cuda.synchronize`) runs before and after each timed call, so queued
    device work is neither charged to the wrong call nor left out.
    """
    for _ in range(warmup):
        fn()
    return statistics.median(time_once(fn, sync) for _ in range(repeats))


def time_once(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> float:
    """Wall-clock seconds of one call of `fn` (synchronised before and after when `sync` is given)."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def time_interleaved(
    fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int, sync: Callable[[], None] | None = None
) -> dict[str, float]:
    """Median seconds of each of `fns`, timed in alternation (one call of each per round, the order
    reversed every other round) so that drifting machine load hits them alike; `warmup` untimed calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            times[name].append(time_once(fns[name], sync))
    return {name: statistics.median(values) for name, values in times.items()}


@dataclass
class Bench:
    """What every figure needs: device, timing settings, workload, and whether to run the d2l rows."""

    device: torch.device
    repeats: int
    warmup: int
    workload: Workload
    baseline: bool = True

    def sync(self) -> Callable[[], None] | None:
        return torch.cuda.synchronize if self.device.type == "cuda" else None

    def time(self, fn: Callable[[], object]) -> float:
        return time_it(fn, self.repeats, self.warmup, self.sync())

    def ids(self, batch: int, length: int, vocab: int, seed: int = SEED) -> torch.Tensor:
        """Random token ids `(batch, length)` without special tokens, from a fixed seed."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(FIRST_ID, vocab, (batch, length), generator=generator).to(self.device)

    def ours(self, arch: Arch) -> Seq2SeqAttnForConditionalGeneration:
        torch.manual_seed(SEED)
        model = never_ending(Seq2SeqAttnForConditionalGeneration(arch.config()))
        model.to(self.device)  # type: ignore[arg-type]  # in place; transformers' typed wrapper of `to` confuses mypy
        return model

    def d2l(self, arch: Arch) -> torch.nn.Module:
        from .reference_d2l import RefSeq2Seq

        torch.manual_seed(SEED)
        return RefSeq2Seq(**arch.baseline).to(self.device)


def never_ending(model: Seq2SeqAttnForConditionalGeneration) -> Seq2SeqAttnForConditionalGeneration:
    """`model` with a `</s>` logit bias of `NEVER_LOGIT`, so decoding always runs to `max_new_tokens`.

    Every figure then does a fixed amount of work, and `generate()` keeps its real per-step cost (the
    `</s>` check of its stopping criteria) without the logits processors `min_new_tokens` would add.
    Only the output layer's bias changes (it is not tied to the embeddings), in place.
    """
    with torch.no_grad():
        model.lm_head.bias[model.config.eos_token_id] = NEVER_LOGIT
    return model


# --------------------------------------------------------------------------------------------
# Workloads as callables (shared by the figures and the `--compare_with` workers)
# --------------------------------------------------------------------------------------------
def ours_train_step(bench: Bench, arch: Arch) -> tuple[Callable[[], None], torch.nn.Module]:
    """One training step of our model on a fixed random batch, and the model."""
    work, model = bench.workload, bench.ours(arch)
    vocab = model.config.vocab_size
    input_ids = bench.ids(work.batch, work.src_len, vocab)
    labels = bench.ids(work.batch, work.tgt_len, vocab, seed=SEED + 1)
    attention_mask = torch.ones_like(input_ids)
    optimizer = torch.optim.Adam(model.parameters())
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
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
    optimizer = torch.optim.Adam(model.parameters())
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(src, valid_lens, dec_input)  # (B, T, V)
        F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1)).backward()
        optimizer.step()

    return step, model


def generate_fn(
    model: Any, input_ids: torch.Tensor, new_tokens: int, num_beams: int = 1
) -> Callable[[], None]:
    """A `generate()` call of exactly `new_tokens` new tokens, for a model that never ends (see
    `never_ending`; any model with that method: ours, or an ONNX Runtime one exported from ours)."""
    attention_mask = torch.ones_like(input_ids)
    eos = model.config.eos_token_id

    def run() -> None:
        out = model.generate(
            input_ids,
            attention_mask=attention_mask,
            max_new_tokens=new_tokens,
            do_sample=False,
            num_beams=num_beams,
            eos_token_id=eos,
        )
        if out.shape != (input_ids.shape[0], 1 + new_tokens):  # start token + new tokens
            raise RuntimeError(f"generate() returned shape {tuple(out.shape)}; the fixed length was not kept")

    return run


def one_at_a_time_fn(model: Any, sources: torch.Tensor, new_tokens: int) -> Callable[[], None]:
    """`generate()` on each source row alone (batch 1), in turn."""
    calls = [generate_fn(model, sources[i : i + 1], new_tokens) for i in range(sources.shape[0])]

    def run() -> None:
        for call in calls:
            call()

    return run


def d2l_greedy_fn(bench: Bench, model: Any, sources: torch.Tensor) -> Callable[[], None]:
    """d2l's `greedy_one` over each source row in turn (one sentence at a time, as the book does)."""
    rows = sources.tolist()
    # greedy_one builds its inputs with torch.tensor(...) on the default device; the device context
    # slows every torch call (~13% here), so it is entered only off the CPU.
    cpu = bench.device.type == "cpu"

    def run() -> None:
        with contextlib.nullcontext() if cpu else torch.device(bench.device):
            for row in rows:
                tokens = model.greedy_one(row, 1, D2L_NEVER_EOS, bench.workload.new_tokens)
                if len(tokens) != bench.workload.new_tokens:
                    raise RuntimeError(f"d2l greedy_one returned {len(tokens)} tokens")

    return run


def decoder_loop_fn(model: Any, input_ids: torch.Tensor, new_tokens: int) -> Callable[[], None]:
    """Greedy decoding as a bare loop of decoder steps: encoder once, then per token
    `decoder -> lm_head -> argmax`. Our model's own cost, without `generate()`'s machinery; under
    `torch.no_grad`, as stock `generate()` runs."""
    attention_mask = torch.ones_like(input_ids)
    start = torch.full_like(input_ids[:, :1], model.config.decoder_start_token_id)
    encoder, decoder = model.model.encoder, model.model.decoder

    @torch.no_grad()
    def run() -> None:
        cache = decoder.init_cache(encoder(input_ids, attention_mask))
        tokens = start
        for _ in range(new_tokens):
            features, cache, _ = decoder(tokens, cache)
            tokens = model.lm_head(features[:, -1]).argmax(-1, keepdim=True)  # (B, 1)

    return run


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def bench_matmul(bench: Bench) -> dict[str, Any]:
    """fp32 `torch.mm` GFLOP/s for each square size; `GFLOP/s` is the best median."""
    result = {}
    for size in bench.workload.matmul_sizes:
        a, b = torch.randn(size, size, device=bench.device), torch.randn(size, size, device=bench.device)
        result[f"n{size}"] = 2 * size**3 / bench.time(partial(torch.mm, a, b)) / 1e9
    return {"GFLOP/s": max(result.values()), **result}


def bench_train(bench: Bench, arch: Arch, kind: str) -> dict[str, Any]:
    make_step = ours_train_step if kind == "ours" else d2l_train_step
    seconds = bench.time(make_step(bench, arch)[0])
    tokens = bench.workload.batch * bench.workload.tgt_len
    return {"tokens/s": tokens / seconds, "step_ms": 1e3 * seconds}


def bench_mfu(bench: Bench, arch: Arch, train: dict[str, Any], matmul: dict[str, Any]) -> dict[str, Any]:
    """Achieved model FLOP/s in training (analytic FLOPs / measured step time) over the matmul peak."""
    work = bench.workload
    flops = train_flops_per_step(arch.config(), work.batch, work.src_len, work.tgt_len)
    achieved = flops / (train["step_ms"] / 1e3) / 1e9
    return {"MFU%": 100 * achieved / matmul["GFLOP/s"], "GFLOP/step": flops / 1e9, "GFLOP/s": achieved}


def bench_greedy(bench: Bench, arch: Arch, kind: str) -> dict[str, Any]:
    """Greedy new tokens/s: ours batched (gen_batch), d2l one sentence at a time."""
    work = bench.workload
    vocab = arch.config().vocab_size
    if kind == "ours":
        model = bench.ours(arch).eval()
        sources = bench.ids(work.gen_batch, work.src_len, vocab)
        seconds = bench.time(generate_fn(model, sources, work.new_tokens))
        return {"new_tokens/s": work.gen_batch * work.new_tokens / seconds, "batch": work.gen_batch}
    model = bench.d2l(arch).eval()
    seconds = bench.time(d2l_greedy_fn(bench, model, bench.ids(work.sentences, work.src_len, vocab)))
    return {"new_tokens/s": work.sentences * work.new_tokens / seconds, "batch": 1}


def bench_beam(bench: Bench, arch: Arch) -> dict[str, Any]:
    """Beam search vs greedy on the same batch; `beam/greedy` is the cost ratio per sentence."""
    work = bench.workload
    model = bench.ours(arch).eval()
    input_ids = bench.ids(work.beam_batch, work.src_len, model.config.vocab_size)
    beam = bench.time(generate_fn(model, input_ids, work.new_tokens, work.num_beams))
    greedy = bench.time(generate_fn(model, input_ids, work.new_tokens))
    tokens = work.beam_batch * work.new_tokens
    return {
        "new_tokens/s": tokens / beam,
        "greedy_new_tokens/s": tokens / greedy,
        "beam/greedy": beam / greedy,
        "beams": work.num_beams,
        "batch": work.beam_batch,
    }


def bench_latency(bench: Bench, arch: Arch, kind: str) -> dict[str, Any]:
    """Milliseconds to translate one sentence alone (batch 1, greedy, `new_tokens` tokens)."""
    work = bench.workload
    sources = bench.ids(work.sentences, work.src_len, arch.config().vocab_size)
    if kind == "ours":
        seconds = bench.time(one_at_a_time_fn(bench.ours(arch).eval(), sources, work.new_tokens))
    else:
        seconds = bench.time(d2l_greedy_fn(bench, bench.d2l(arch).eval(), sources))
    return {"ms/sentence": 1e3 * seconds / work.sentences}


def bench_step(bench: Bench, arch: Arch) -> dict[str, Any]:
    """Per generated token: the bare decoder-step loop vs `generate()`, at batch 1 and at gen_batch.

    `b1_generate/loop` is the time `generate()` takes over the bare loop's (1.15 = 15% more).
    """
    work = bench.workload
    model = bench.ours(arch).eval()
    result = {}
    for batch in (1, work.gen_batch):
        input_ids = bench.ids(batch, work.src_len, model.config.vocab_size)
        loop = bench.time(decoder_loop_fn(model, input_ids, work.new_tokens)) / work.new_tokens
        generate = bench.time(generate_fn(model, input_ids, work.new_tokens)) / work.new_tokens
        result[f"b{batch}_generate/loop"] = generate / loop
        result[f"b{batch}_loop_ms"] = 1e3 * loop
        result[f"b{batch}_generate_ms"] = 1e3 * generate
    return result


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
    make_step = ours_train_step if kind == "ours" else d2l_train_step
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
    note on failure."""
    if bench.device.type == "cuda" or quick:
        return memory_step(bench, arch, kind)
    command = [sys.executable, "-m", "hf_seq2seq_attn.benchmark", "--memory-child", f"{kind}:{arch.name}"]
    command += ["--threads", str(threads), "--device", "cpu"] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"note: memory probe for {kind}/{arch.name} failed: {done.stderr.strip()[-500:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----- backends (issue 10): PyTorch fp32 vs ONNX Runtime fp32 / int8 -----
BACKENDS = ("pytorch", "onnx-fp32", "onnx-int8")


def safetensors_mib(folder: Path) -> float:
    """Size in MiB of the `*.safetensors` weight files `save_pretrained` wrote into `folder`."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20


def onnx_mib(folder: Path, variant: str) -> float:
    """Size in MiB of the graphs of one variant (`"fp32"` or `"int8"`) of an `export_onnx` folder, as its
    manifest lists them (with any external-data files beside them)."""
    from hf_seq2seq_attn.onnx_export import MANIFEST_NAME

    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    total = 0
    for name in manifest["graphs"][variant].values():
        total += sum(f.stat().st_size for f in folder.glob(name + "*") if f.is_file())  # graph (+ .data)
    return total / 2**20


def onnx_runners(
    model: Seq2SeqAttnForConditionalGeneration, folder: Path, threads: int
) -> Iterator[tuple[str, Any, float]]:
    """Export `model` once (fp32 and int8 graphs) and yield `(backend, ONNX Runtime model, MiB)` for each."""
    from hf_seq2seq_attn.modeling_ort import Seq2SeqAttnOnnxModel
    from hf_seq2seq_attn.onnx_export import export_onnx

    exported = Path(export_onnx(model, folder, int8=True))
    for variant in ("fp32", "int8"):
        runner = Seq2SeqAttnOnnxModel.from_pretrained(exported, int8=variant == "int8", num_threads=threads)
        yield f"onnx-{variant}", runner, onnx_mib(exported, variant)


def onnx_available() -> str | None:
    """None when the ONNX backend can run here, else the reason (a one-line note)."""
    try:
        import onnxruntime  # noqa: F401

        from hf_seq2seq_attn.modeling_ort import Seq2SeqAttnOnnxModel  # noqa: F401
        from hf_seq2seq_attn.onnx_export import export_onnx  # noqa: F401
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if missing.startswith(("onnx", "onnxruntime")):
            return f"onnx rows skipped: {ONNX_HINT}"
        return f"onnx rows skipped: not available ({error})"
    return None


def bench_backends(bench: Bench, arch: Arch, threads: int) -> list[tuple[str, dict[str, Any]]]:
    """Rows `(backend, metrics)`: batch-1 greedy latency, batch-`gen_batch` greedy and beam throughput,
    model file size; ONNX rows add their ratios to the PyTorch row of this run (`x` = times better:
    PyTorch latency / theirs, their throughput / PyTorch's; `size_ratio` = their size / PyTorch's).
    The backends are timed in alternation, figure by figure (`time_interleaved`)."""
    work = bench.workload
    vocab = arch.config().vocab_size
    sentences = bench.ids(work.sentences, work.src_len, vocab)
    batch = bench.ids(work.gen_batch, work.src_len, vocab)
    tokens = work.gen_batch * work.new_tokens
    note = onnx_available()
    with tempfile.TemporaryDirectory(prefix="seq2seq-attn-bench-") as tmp:
        model = bench.ours(arch).eval()
        model.save_pretrained(Path(tmp) / "pytorch")
        runners: dict[str, tuple[Any, float]] = {"pytorch": (model, safetensors_mib(Path(tmp) / "pytorch"))}
        if note is None:
            try:
                for backend, runner, size in onnx_runners(model, Path(tmp) / "onnx", threads):
                    runners[backend] = (runner, size)
            except Exception as error:  # an export or ONNX Runtime failure must not stop the other figures
                note = f"onnx rows skipped: {type(error).__name__}: {error}"

        def timed(make: Callable[[Any], Callable[[], None]]) -> dict[str, float]:
            fns = {name: make(runner) for name, (runner, _) in runners.items()}
            return time_interleaved(fns, bench.repeats, bench.warmup, bench.sync())

        latency = timed(lambda runner: one_at_a_time_fn(runner, sentences, work.new_tokens))
        greedy = timed(lambda runner: generate_fn(runner, batch, work.new_tokens))
        beam = timed(lambda runner: generate_fn(runner, batch, work.new_tokens, work.num_beams))
    if note is not None:
        print(note)
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, (_, size) in runners.items():
        row = {
            "b1_latency_ms": 1e3 * latency[name] / work.sentences,
            f"b{work.gen_batch}_greedy_tok/s": tokens / greedy[name],
            f"b{work.gen_batch}_beam{work.num_beams}_tok/s": tokens / beam[name],
            "size_MiB": size,
        }
        rows.append((name, row if name == "pytorch" else {**row, **backend_ratios(row, rows[0][1])}))
    return rows


def backend_ratios(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """A backend row's figures relative to PyTorch's (`x` = times better; `size_ratio` = size / PyTorch's)."""
    latency, greedy, beam, size = list(row)[:4]
    return {
        "latency_x": reference[latency] / row[latency],
        "greedy_x": row[greedy] / reference[greedy],
        "beam_x": row[beam] / reference[beam],
        "size_ratio": row[size] / reference[size],
    }


# --------------------------------------------------------------------------------------------
# Side by side with another checkout (`--compare_with`)
# --------------------------------------------------------------------------------------------
def compare_units(workload: Workload) -> dict[str, tuple[int, str]]:
    """Per figure of COMPARE_FIGURES: the work units of one timed call and the figure's unit."""
    latency = (workload.sentences, "ms/sentence")
    return {
        "train": (workload.batch * workload.tgt_len, "tokens/s"),
        "greedy": (workload.gen_batch * workload.new_tokens, "new_tokens/s"),
        "beam": (workload.beam_batch * workload.new_tokens, "new_tokens/s"),
        "latency": latency,
        **{figure: latency for figure in OURS_ONLY},
    }


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
    return jobs


def figure_value(units: float, unit: str, seconds: float) -> float:
    """A compare figure from the seconds of one call: a throughput, or milliseconds per sentence."""
    return 1e3 * seconds / units if unit == "ms/sentence" else units / seconds


def worker_main(argv: list[str]) -> int:
    """A `--compare_with` worker: reads JSON requests on stdin, answers JSON lines on stdout.

    Started with `PYTHONPATH=<checkout>` so `hf_seq2seq_attn` is that checkout's package. First line
    in: `{"threads", "quick", "warmup", "figures"}`; the worker builds each figure's job, warms it
    up, and answers `{"package": <path>}`. Then each line `{"figure": name}` is answered with
    `{"seconds": <one timed call>}`; end of input ends the worker.
    """
    del argv
    import hf_seq2seq_attn

    setup = json.loads(sys.stdin.readline())
    torch.set_num_threads(setup["threads"])
    transformers.logging.set_verbosity_error()
    workload = QUICK_WORKLOAD if setup["quick"] else Workload()
    device = torch.device("cpu")
    bench = Bench(device, 1, setup["warmup"], workload, baseline=False)
    with contextlib.ExitStack() as stack:
        jobs = compare_jobs(bench, make_archs(setup["quick"])[0], setup["figures"], stack)
        for name in setup["figures"]:
            for _ in range(setup["warmup"]):
                jobs[name]()
        versions = f"torch={torch.__version__} transformers={transformers.__version__}"
        _reply({"package": str(Path(hf_seq2seq_attn.__file__).parent), "versions": versions})
        for line in sys.stdin:
            name = json.loads(line)["figure"]
            _reply({"seconds": time_once(jobs[name])})
    return 0


REPLY_PREFIX = "@bench-worker "


def _reply(message: dict[str, Any]) -> None:
    print(REPLY_PREFIX + json.dumps(message), flush=True)


# `python -c` program of a worker: runs this very file as a plain module (not `-m
# hf_seq2seq_attn.benchmark`, which would import the other checkout's benchmark, or none).
WORKER_BOOT = (
    "import runpy, sys; g = runpy.run_path(sys.argv[1], run_name='seq2seq_attn_bench_worker'); "
    "sys.exit(g['worker_main'](sys.argv[2:]))"
)


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
            [python, "-c", WORKER_BOOT, str(Path(__file__).resolve())],
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


def package_root() -> Path:
    """The directory holding this process's `hf_seq2seq_attn` package (for our own worker)."""
    return Path(__file__).resolve().parents[1]


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
) -> dict[str, dict[str, float]]:
    """Time `figures` in two workers (ours, and the package in `other` run by the interpreter
    `other_python`, e.g. of a venv with another transformers), alternating which goes first in each round;
    print one row per side and figure and the ours/theirs ratios; return the medians
    `{figure: {"ours": value, "theirs": value}}`. A figure of OURS_ONLY is compared with the other side's
    figure it names (PyTorch latency, which is then timed too), and, where the other checkout has an ONNX
    export, also with its own ONNX figure (e.g. the same package under two transformers releases)."""
    pairs = compare_pairs(figures, theirs_onnx=(other / "hf_seq2seq_attn" / "onnx_export.py").is_file())
    theirs_figures = list(dict.fromkeys(theirs for _, theirs in pairs))
    plan = {"ours": figures, "theirs": theirs_figures}
    sides: list[Worker] = []
    try:
        for name, root, python in (("ours", package_root(), sys.executable), ("theirs", other, other_python)):
            setup = {"threads": threads, "quick": quick, "warmup": warmup, "figures": plan[name]}
            sides.append(Worker(name, root, setup, python))
        for worker in sides:
            worker.ready()
            print(f"compare  {worker.name:<6} package {worker.package}  {worker.versions}")
        seconds: dict[tuple[str, str], list[float]] = {(f, w.name): [] for w in sides for f in plan[w.name]}
        timed = list(dict.fromkeys(figures + theirs_figures))
        for round_ in range(repeats):
            for index, figure in enumerate(timed):
                order = sides if (round_ + index) % 2 == 0 else sides[::-1]
                for worker in order:
                    if figure in plan[worker.name]:
                        seconds[figure, worker.name].append(worker.request({"figure": figure})["seconds"])
    finally:
        for worker in sides:
            worker.close()
    units = compare_units(QUICK_WORKLOAD if quick else Workload())
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


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------
def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def run_figures(bench: Bench, archs: list[Arch], figures: set[str], threads: int, quick: bool) -> dict:
    """Measure and print the selected figures; returns {(figure, kind, arch): metrics}."""
    results: dict[tuple[str, str, str], dict[str, Any]] = {}

    def emit(figure: str, kind: str, arch: str, metrics: dict[str, Any] | None) -> None:
        if metrics is None:
            return
        results[figure, kind, arch] = metrics
        values = "  ".join(f"{key}={fmt(value)}" for key, value in metrics.items())
        print(f"{figure:<8} {kind:<9} {arch:<8} threads={threads}  {values}", flush=True)

    kinds = ["ours", "d2l"] if bench.baseline else ["ours"]
    if "matmul" in figures:
        emit("matmul", "mm", "fp32", bench_matmul(bench))
    for arch in archs:
        for kind in kinds if "train" in figures else []:
            emit("train", kind, arch.name, bench_train(bench, arch, kind))
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


# (label, figure, metric, ours/d2l (True), d2l/ours (False) or ours alone (None)) of each ratio line
RATIOS = [
    ("train tokens/s ours/d2l", "train", "tokens/s", True),
    ("greedy tokens/s ours batched / d2l one-at-a-time", "greedy", "new_tokens/s", True),
    ("latency d2l/ours (ours x as fast)", "latency", "ms/sentence", False),
    ("beam / greedy cost per sentence", "beam", "beam/greedy", None),
    ("generate() / bare decoder loop, batch 1", "step", "b1_generate/loop", None),
    ("MFU %", "mfu", "MFU%", None),
]


def summarize(results: dict, threads: int) -> list[str]:
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
    for line in lines:
        print(line)
    return lines


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"cpu ({model}, {os.cpu_count()} logical cores)"


class _ArgumentError(Exception):
    """A user mistake on the command line; `main` prints it and returns 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="seq2seq-attn benchmark",
        description=(__doc__ or "").split("\n", 1)[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    # Imported here, not at the top: a `--compare_with` worker runs this file with another checkout's package,
    # which may have no data section.
    from hf_seq2seq_attn.benchmark_data import DEFAULT_BASELINE_PAIRS, DEFAULT_PAIRS, DEFAULT_TOKENIZE_PAIRS

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
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # internal: KIND:ARCH, one memory probe
    return parser


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


def print_header(
    args: argparse.Namespace, device: torch.device, workload: Workload, archs: list[Arch], baseline: bool
) -> None:
    print(
        f"device={device_name(device)}  torch={torch.__version__}  transformers={transformers.__version__}  "
        f"repeats={args.repeats} (median)  warmup={args.warmup}  date={time.strftime('%Y-%m-%d %H:%M %Z')}"
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
        return _data_section(args)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # save_pretrained's shard bar between the rows
    workload = QUICK_WORKLOAD if args.quick else Workload()
    archs = make_archs(args.quick)
    device = torch.device(args.device)
    if args.quick and not args.memory_child:
        archs = archs[:1]
    if args.memory_child:
        kind, arch_name = args.memory_child.split(":")
        torch.set_num_threads(args.threads[0])
        bench = Bench(device, 1, 0, workload)
        print(json.dumps(memory_step(bench, next(a for a in archs if a.name == arch_name), kind)))
        return 0
    if args.compare_with is not None:
        print_header(args, torch.device("cpu"), workload, archs[:1], baseline=False)  # what the workers run
        figures = [name for name in COMPARE_FIGURES if name in args.only]
        if (note := onnx_available()) is not None and any(name in OURS_ONLY for name in figures):
            print(note)
            figures = [name for name in figures if name not in OURS_ONLY]
        try:
            for threads in args.threads:
                run_compare(
                    args.compare_with,
                    figures,
                    threads,
                    args.repeats,
                    args.warmup,
                    args.quick,
                    args.compare_python,
                )
        except RuntimeError as error:  # a worker died, e.g. the other checkout's package does not import
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    print_header(args, device, workload, archs, baseline=True)
    print(
        "memory: growth of resident memory over one training step in a fresh process (CPU; "
        "allocator peak on CUDA): gradients + Adam moments (3 x params) + activations"
    )
    bench = Bench(device, args.repeats, args.warmup, workload)
    for threads in args.threads:
        torch.set_num_threads(threads)
        summarize(run_figures(bench, archs, args.only, threads, args.quick), threads)
    return 0


def _data_section(args: argparse.Namespace) -> int:
    """`--data`: the data section (see `benchmark_data.py`); 1 when a train command fails."""
    from hf_seq2seq_attn.benchmark_data import run_data_section

    print(f"device={device_name(torch.device('cpu'))}  torch={torch.__version__}  "
          f"transformers={transformers.__version__}  date={time.strftime('%Y-%m-%d %H:%M %Z')}")  # fmt: skip
    try:
        sizes = (args.data_pairs, args.compare_with, args.data_baseline_pairs, args.data_tokenize_pairs)
        run_data_section(*sizes, data_dir=args.data_dir)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "FIGURES",
    "ModelSizes",
    "Workload",
    "forward_flops",
    "main",
    "run_compare",
    "time_interleaved",
    "train_flops_per_step",
]


if __name__ == "__main__":
    raise SystemExit(main())
