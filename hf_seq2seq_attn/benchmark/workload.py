"""What the benchmark measures: batch shapes, the two architectures, and `Bench`, which builds the models and
inputs of every figure and times calls with the run's settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# Absolute, not relative: a `--compare_with` worker loads this package beside another checkout's
# `hf_seq2seq_attn`, whose model it must time (see `compare.WORKER_BOOT`).
from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration

from .options import COMPARE_SHAPES
from .reference_d2l import RefSeq2Seq
from .timing import time_it

SEED = 0
FIRST_ID = 4  # ids below are <pad> <s> </s> <unk>
D2L_NEVER_EOS = -1  # an end id d2l's greedy_one never produces, so it decodes the full length
# The `</s>` logit bias of our benchmark models: random weights give logits of a few units, so `</s>`
# never wins an argmax or a beam (finite, so int8 export and log-softmax stay ordinary arithmetic).
NEVER_LOGIT = -1e4


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
    stream_mib: int = 256  # the memory-bandwidth array (`floor.bench_bandwidth`), at least...
    stream_over_cache: int = 4  # ...this many times the last-level cache, so it streams from memory
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
    stream_mib=16,
    stream_over_cache=0,
    memory_archs=("default",),
)


def workload_of(quick: bool) -> Workload:
    """The tiny smoke-test shapes with `quick`, else the real ones."""
    return QUICK_WORKLOAD if quick else Workload()


@dataclass(frozen=True)
class Arch:
    """One architecture as our config keywords and as `RefSeq2Seq` constructor arguments."""

    name: str
    ours: dict[str, Any]
    baseline: dict[str, Any]

    def config(self) -> Seq2SeqAttnConfig:
        return Seq2SeqAttnConfig(**self.ours)


def make_archs(quick: bool) -> list[Arch]:
    """The default shape and d2l's own shape (tiny versions of both with `quick`).

    default  ours: biGRU 256/direction encoder, GRU 512 decoder, E 256, V 8000, additive attention.
             d2l: one `num_hiddens` for encoder and decoder, so it cannot express 256/direction
             with a 512 decoder. We give it num_hiddens=256 bidirectional: the encoder matches ours
             exactly, the decoder is half as wide and it has no read-out layer, so it does ~0.7x our
             model FLOPs per token and our speed-up ratio is a lower bound. (num_hiddens=512 would
             give it a 512/direction encoder and ~1.8x our FLOPs, flattering us.)
    d2l      d2l's own: unidirectional 2-layer GRU encoder and decoder, hidden 512, E 256, and ours at
             the same shape (plus our linear bridge and read-out layer, which d2l lacks).
    """
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


def compare_arch(shape: str, quick: bool) -> Arch:
    """The architecture a `--compare_with` run times (its other side has no d2l rows, so no baseline):

    default  the default shape of [`make_archs`] (Bahdanau-style decoder).
    joey     the same sizes in Joey NMT's RNN order: a Luong-style decoder with input feeding (attention
             after the RNN step, the attentional vector fed to the next step), additive attention.
    """
    default = make_archs(quick)[0]
    if shape == "default":
        return default
    if shape == "joey":
        return Arch(
            "joey", ours={**default.ours, "decoder_style": "luong", "input_feeding": True}, baseline={}
        )
    raise ValueError(f"unknown compare shape {shape!r}; one of {', '.join(COMPARE_SHAPES)}")


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
