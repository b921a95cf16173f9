"""Speed benchmark of the attention seq2seq model against the textbook (d2l) baseline.

Figures, one printed line each (medians over `--repeats` timed calls after `--warmup` untimed ones):
    matmul   fp32 `torch.mm` GFLOP/s of this machine at this thread count (best of the sizes' medians)
    train    target tokens/s of one training step: forward + loss + backward + Adam step
    mfu      our achieved model FLOP/s in training / the matmul peak (FLOPs from `train_flops_per_step`)
    greedy   new tokens/s of greedy `generate()` on a batch (ours) vs d2l's one-sentence-at-a-time loop
    beam     new tokens/s of beam search (5 beams) and its cost per sentence / greedy's, same batch
    latency  ms to translate one sentence (batch 1, greedy, fixed length)
    step     ms per generated token: our forward alone (manual cached loop) vs inside `generate()`
    memory   peak memory growth over one training step (how: see `memory_step`)

Inputs are random ids from a fixed seed, all sources and targets of the same length (no padding).
Untrained models would emit `</s>` at once, so every decode is forced to a fixed number of new tokens
(`min_new_tokens` for `generate()`, an end id that never occurs for d2l's `greedy_one`).

Architectures (each row names its own; see `make_archs`):
    default  ours: biGRU 256/direction encoder, GRU 512 decoder, E 256, V 8000, additive attention.
             d2l: one `num_hiddens` for encoder and decoder, so it cannot express 256/direction
             with a 512 decoder. We give it num_hiddens=256 bidirectional: the encoder matches ours
             exactly, the decoder is half as wide and it has no read-out layer, so it does ~0.7x our
             model FLOPs per token and our speed-up ratio is a lower bound. (num_hiddens=512 would
             give it a 512/direction encoder and ~1.8x our FLOPs, flattering us.)
    d2l      d2l's own: unidirectional 2-layer GRU encoder and decoder, hidden 512, E 256, and ours at
             the same shape (plus our linear bridge and read-out layer, which d2l lacks).

Usage:
    python scripts/benchmark.py                       # everything, current thread count
    python scripts/benchmark.py --threads 1 2 --repeats 3 --only train,mfu
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as `python scripts/benchmark.py` without installing the package
    sys.path.insert(0, str(REPO_ROOT))

import transformers  # noqa: E402

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration  # noqa: E402

FIGURES = ("matmul", "train", "mfu", "greedy", "beam", "latency", "step", "memory")
NEEDS = {"mfu": ("train", "matmul")}  # figures computed from other figures
DEFAULT_BASELINE = "../shared/bench/ref_d2l.py"
SEED = 0
FIRST_ID = 4  # ids below are <pad> <s> </s> <unk>
D2L_NEVER_EOS = -1  # an end id d2l's greedy_one never produces, so it decodes the full length


# --------------------------------------------------------------------------------------------
# Workload and architectures
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """Batch shapes of every figure."""

    batch: int = 64  # training batch
    src_len: int = 30
    tgt_len: int = 30
    gen_batch: int = 64  # greedy throughput
    beam_batch: int = 16  # beam search and its greedy comparison
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
    """One architecture as our config and as `RefSeq2Seq` constructor arguments."""

    name: str
    ours: dict
    baseline: dict

    def config(self) -> Seq2SeqAttnConfig:
        return Seq2SeqAttnConfig(**self.ours)


def make_archs(quick: bool) -> list[Arch]:
    """The default shape and d2l's own shape (tiny versions of both with `quick`)."""
    vocab, emb, enc, dec = (64, 8, 8, 16) if quick else (8000, 256, 256, 512)
    common = {"embedding_dropout": 0.0, "readout_dropout": 0.0, "attention_type": "additive"}
    default = Arch(
        "default",
        ours=dict(
            vocab_size=vocab,
            embedding_size=emb,
            encoder_hidden_size=enc,
            decoder_hidden_size=dec,
            **common,
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
    bi = "bi" if config.bidirectional else ""
    return (
        f"enc={bi}{config.rnn_type.upper()}{config.encoder_hidden_size}x{config.encoder_layers} "
        f"dec={config.rnn_type.upper()}{config.decoder_hidden_size}x{config.decoder_layers} "
        f"att={config.attention_type}/{config.attention_hidden_size} bridge={config.bridge} "
        f"readout={config.embedding_size} E={config.embedding_size} V={config.target_vocab_size}"
    )


def describe_baseline(kwargs: dict) -> str:
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
def forward_flops(config: Seq2SeqAttnConfig, batch: int, src_len: int, tgt_len: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one teacher-forced forward pass, counted from the config.

    Counted, in the legend of the modeling file (G = gate width, 3H for a GRU):
        encoder     per source token, direction and layer: input `2*G_e*in` + recurrent `2*G_e*H_e`
        bridge      per sentence `2*K*L*H`
        keys        per source token `2*K*A` (projected once per source)
        per target step: query `2*H*A`, scores `2*S*A`, context `2*S*K`,
                    decoder RNN layer 0 `2*G*(E+K) + 2*G*H`, further layers `2*G*H + 2*G*H`,
                    read-out `2*(H+K+E)*E`, vocabulary projection `2*E*V`
    Not counted: embeddings, gate nonlinearities, tanh/softmax of the attention, the loss.
    Only the configurations this benchmark runs are supported (one-head additive, Bahdanau style).
    """
    if (
        config.decoder_style != "bahdanau"
        or config.attention_type != "additive"
        or config.num_attention_heads != 1
    ):
        raise ValueError(
            "forward_flops counts the Bahdanau decoder with one-head additive attention only; got "
            f"decoder_style={config.decoder_style!r}, attention_type={config.attention_type!r}, "
            f"num_attention_heads={config.num_attention_heads}."
        )
    gates = {"gru": 3, "lstm": 4, "rnn": 1}[config.rnn_type]
    emb, enc_hidden, hid = config.embedding_size, config.encoder_hidden_size, config.decoder_hidden_size
    key, width, vocab = config.encoder_output_size, config.attention_hidden_size, config.target_vocab_size
    directions = 2 if config.bidirectional else 1

    encoder = 0
    for layer in range(config.encoder_layers):
        inputs = emb if layer == 0 else directions * enc_hidden
        encoder += directions * 2 * gates * enc_hidden * (inputs + enc_hidden)
    bridge = 2 * key * config.decoder_layers * hid if config.bridge == "linear" else 0
    keys = 2 * key * width
    decoder_rnn = (
        2 * gates * hid * (emb + key + hid) + (config.decoder_layers - 1) * 2 * gates * hid * 2 * hid
    )
    step = (
        2 * hid * width  # query projection
        + 2 * src_len * width  # v^T tanh(...) over the source
        + 2 * src_len * key  # weighted sum of values
        + decoder_rnn
        + 2 * (hid + key + emb) * emb  # read-out
        + 2 * emb * vocab  # vocabulary projection
    )
    return batch * (src_len * (encoder + keys) + bridge + tgt_len * step)


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
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class Bench:
    """What every figure needs: device, timing settings, workload, and the d2l module (or None)."""

    device: torch.device
    repeats: int
    warmup: int
    workload: Workload
    baseline: ModuleType | None

    def time(self, fn: Callable[[], object]) -> float:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else None
        return time_it(fn, self.repeats, self.warmup, sync)

    def ids(self, batch: int, length: int, vocab: int, seed: int = SEED) -> torch.Tensor:
        """Random token ids `(batch, length)` without special tokens, from a fixed seed."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(FIRST_ID, vocab, (batch, length), generator=generator).to(self.device)

    def ours(self, arch: Arch) -> Seq2SeqAttnForConditionalGeneration:
        torch.manual_seed(SEED)
        return Seq2SeqAttnForConditionalGeneration(arch.config()).to(self.device)

    def d2l(self, arch: Arch) -> torch.nn.Module:
        torch.manual_seed(SEED)
        return self.baseline.RefSeq2Seq(**arch.baseline).to(self.device)


def load_baseline(path: Path) -> ModuleType | None:
    """Import `ref_d2l.py` by path; None (with a note) when the file is missing."""
    if not path.is_file():
        print(f"note: baseline {path} not found; skipping the d2l rows")
        return None
    spec = importlib.util.spec_from_file_location("ref_d2l", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def bench_matmul(bench: Bench) -> dict:
    """fp32 `torch.mm` GFLOP/s for each square size; `GFLOP/s` is the best median."""
    result = {}
    for size in bench.workload.matmul_sizes:
        a, b = torch.randn(size, size, device=bench.device), torch.randn(size, size, device=bench.device)
        result[f"n{size}"] = 2 * size**3 / bench.time(lambda a=a, b=b: torch.mm(a, b)) / 1e9
    return {"GFLOP/s": max(result.values()), **result}


def ours_train_step(bench: Bench, arch: Arch) -> tuple[Callable[[], None], torch.nn.Module]:
    """One training step of our model on a fixed random batch, and the model."""
    work, model = bench.workload, bench.ours(arch)
    vocab = model.config.target_vocab_size
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
    """One training step of d2l's model (logits from `forward(src, valid_lens, dec_input)`, mean CE), and the model."""
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


def bench_train(bench: Bench, arch: Arch, kind: str) -> dict:
    make_step = ours_train_step if kind == "ours" else d2l_train_step
    seconds = bench.time(make_step(bench, arch)[0])
    tokens = bench.workload.batch * bench.workload.tgt_len
    return {"tokens/s": tokens / seconds, "step_ms": 1e3 * seconds}


def bench_mfu(bench: Bench, arch: Arch, train: dict, matmul: dict) -> dict:
    """Achieved model FLOP/s in training (analytic FLOPs / measured step time) over the matmul peak."""
    work = bench.workload
    flops = train_flops_per_step(arch.config(), work.batch, work.src_len, work.tgt_len)
    achieved = flops / (train["step_ms"] / 1e3) / 1e9
    return {"MFU%": 100 * achieved / matmul["GFLOP/s"], "GFLOP/step": flops / 1e9, "GFLOP/s": achieved}


def generate_fn(model, input_ids: torch.Tensor, new_tokens: int, num_beams: int = 1) -> Callable[[], None]:
    """A `generate()` call forced to exactly `new_tokens` new tokens."""
    attention_mask = torch.ones_like(input_ids)

    def run() -> None:
        out = model.generate(
            input_ids,
            attention_mask=attention_mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            num_beams=num_beams,
            eos_token_id=model.config.eos_token_id,
        )
        if out.shape != (input_ids.shape[0], 1 + new_tokens):  # start token + new tokens
            raise RuntimeError(f"generate() returned shape {tuple(out.shape)}; the fixed length was not kept")

    return run


def d2l_greedy_fn(bench: Bench, model, sources: torch.Tensor) -> Callable[[], None]:
    """d2l's `greedy_one` over each source row in turn (one sentence at a time, as the book does)."""
    rows = sources.tolist()
    # greedy_one builds its inputs with torch.tensor(...) on the default device; the device context
    # slows every torch call (~13% here), so it is entered only off the CPU.
    cpu = bench.device.type == "cpu"

    def run() -> None:
        with contextlib.nullcontext() if cpu else torch.device(bench.device):
            for row in rows:
                tokens = model.greedy_one(row, 1, D2L_NEVER_EOS, bench.workload.new_tokens)
                assert len(tokens) == bench.workload.new_tokens

    return run


def bench_greedy(bench: Bench, arch: Arch, kind: str) -> dict:
    """Greedy new tokens/s: ours batched (gen_batch), d2l one sentence at a time."""
    work = bench.workload
    vocab = arch.config().vocab_size
    if kind == "ours":
        model = bench.ours(arch).eval()
        seconds = bench.time(
            generate_fn(model, bench.ids(work.gen_batch, work.src_len, vocab), work.new_tokens)
        )
        return {"new_tokens/s": work.gen_batch * work.new_tokens / seconds, "batch": work.gen_batch}
    model = bench.d2l(arch).eval()
    seconds = bench.time(d2l_greedy_fn(bench, model, bench.ids(work.sentences, work.src_len, vocab)))
    return {"new_tokens/s": work.sentences * work.new_tokens / seconds, "batch": 1}


def bench_beam(bench: Bench, arch: Arch) -> dict:
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


def bench_latency(bench: Bench, arch: Arch, kind: str) -> dict:
    """Milliseconds to translate one sentence alone (batch 1, greedy, `new_tokens` tokens)."""
    work = bench.workload
    sources = bench.ids(work.sentences, work.src_len, arch.config().vocab_size)
    if kind == "ours":
        model = bench.ours(arch).eval()
        calls = [generate_fn(model, sources[i : i + 1], work.new_tokens) for i in range(work.sentences)]
        seconds = bench.time(lambda: [call() for call in calls])
    else:
        seconds = bench.time(d2l_greedy_fn(bench, bench.d2l(arch).eval(), sources))
    return {"ms/sentence": 1e3 * seconds / work.sentences}


def manual_greedy_fn(model, input_ids: torch.Tensor, new_tokens: int) -> Callable[[], None]:
    """Greedy decoding as a bare loop of cached forward calls: our model's cost without `generate()`."""
    attention_mask = torch.ones_like(input_ids)
    start = torch.full_like(input_ids[:, :1], model.config.decoder_start_token_id)

    @torch.inference_mode()
    def run() -> None:
        encoder_outputs = model.get_encoder()(input_ids, attention_mask)
        tokens, cache = start, None
        for _ in range(new_tokens):
            out = model(
                attention_mask=attention_mask,
                decoder_input_ids=tokens,
                encoder_outputs=encoder_outputs,
                past_key_values=cache,
                use_cache=True,
            )
            tokens, cache = out.logits[:, -1].argmax(-1, keepdim=True), out.past_key_values  # (B, 1)

    return run


def bench_step(bench: Bench, arch: Arch) -> dict:
    """Per generated token: the bare cached loop vs `generate()`, at batch 1 and at gen_batch."""
    work = bench.workload
    model = bench.ours(arch).eval()
    result = {}
    for batch in (1, work.gen_batch):
        input_ids = bench.ids(batch, work.src_len, model.config.vocab_size)
        loop = bench.time(manual_greedy_fn(model, input_ids, work.new_tokens)) / work.new_tokens
        generate = bench.time(generate_fn(model, input_ids, work.new_tokens)) / work.new_tokens
        result[f"b{batch}_forward_ms"] = 1e3 * loop
        result[f"b{batch}_generate_ms"] = 1e3 * generate
        result[f"b{batch}_overhead%"] = 100 * (generate - loop) / generate
    return result


def memory_step(bench: Bench, arch: Arch, kind: str) -> dict:
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
        before = _proc_status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        step()
        peak, method = (_proc_status_kib("VmHWM") - before) / 1024, "rss-high-water-reset"
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        step()
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        method = "ru_maxrss-growth"
    return {"peak_MiB": peak, "params_MiB": params, "method": method}


def _proc_status_kib(field: str) -> int:
    """A `kB` field of /proc/self/status (Linux); OSError elsewhere."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def measure_memory(bench: Bench, arch: Arch, kind: str, threads: int, child_args: list[str]) -> dict | None:
    """`memory_step` in a fresh subprocess on CPU (in-process on CUDA); None with a note on failure."""
    if bench.device.type == "cuda":
        return memory_step(bench, arch, kind)
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", f"{kind}:{arch.name}"]
    command += ["--threads", str(threads), *child_args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"note: memory probe for {kind}/{arch.name} failed: {done.stderr.strip()[-500:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------
def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def run_figures(
    bench: Bench, archs: list[Arch], figures: set[str], threads: int, child_args: list[str]
) -> dict:
    """Measure and print the selected figures; returns {(figure, kind, arch): metrics}."""
    results: dict[tuple[str, str, str], dict] = {}

    def emit(figure: str, kind: str, arch: str, metrics: dict | None) -> None:
        if metrics is None:
            return
        results[figure, kind, arch] = metrics
        values = "  ".join(f"{key}={fmt(value)}" for key, value in metrics.items())
        print(f"{figure:<8} {kind:<5} {arch:<8} threads={threads}  {values}", flush=True)

    kinds = ["ours", "d2l"] if bench.baseline is not None else ["ours"]
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
            emit("memory", kind, arch.name, measure_memory(bench, arch, kind, threads, child_args))
    return results


# (description, figure, metric, arch, ours_over_d2l, target, at_least)
TARGETS = [
    ("train tokens/s ours/d2l", "train", "tokens/s", "d2l", True, 4.0, True),
    ("train tokens/s ours/d2l", "train", "tokens/s", "default", True, 3.0, True),
    ("greedy batch / d2l one-at-a-time", "greedy", "new_tokens/s", "default", True, 50.0, True),
    ("greedy batch / d2l one-at-a-time", "greedy", "new_tokens/s", "d2l", True, 50.0, True),
    ("latency d2l/ours", "latency", "ms/sentence", "default", False, 3.0, True),
    ("latency d2l/ours", "latency", "ms/sentence", "d2l", False, 3.0, True),
    ("beam5 / greedy per sentence", "beam", "beam/greedy", "default", None, 3.0, False),
    ("beam5 / greedy per sentence", "beam", "beam/greedy", "d2l", None, 3.0, False),
    ("MFU % (1 thread)", "mfu", "MFU%", "default", None, 30.0, True),
    ("MFU % (1 thread)", "mfu", "MFU%", "d2l", None, 30.0, True),
]


def summarize(results: dict, threads: int) -> None:
    """Print each target whose figures were measured: the ratio, the target, met or MISSED."""
    for name, figure, metric, arch, ours_over_d2l, target, at_least in TARGETS:
        ours = results.get((figure, "ours", arch))
        if ours is None or (figure == "mfu" and threads != 1):
            continue
        if ours_over_d2l is None:
            value = ours[metric]
        else:
            d2l = results.get((figure, "d2l", arch))
            if d2l is None:
                continue
            value = ours[metric] / d2l[metric] if ours_over_d2l else d2l[metric] / ours[metric]
        met = value >= target if at_least else value <= target
        unit = "" if figure == "mfu" else "x"
        print(
            f"summary  threads={threads}  {name:<34} {arch:<8} {value:8.2f}{unit:<2} "
            f"target {'>=' if at_least else '<='}{target:g}{unit:<2} {'met' if met else 'MISSED'}"
        )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"cpu ({model}, {os.cpu_count()} logical cores)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
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
    parser.add_argument("--quick", action="store_true", help="tiny shapes and 1 repeat (smoke test)")
    parser.add_argument(
        "--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}"
    )
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        help="path of ref_d2l.py, relative to the repository root unless absolute",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # internal: KIND:ARCH, one memory probe
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if unknown := only - set(FIGURES):
        parser.error(f"--only: unknown figure(s) {sorted(unknown)}; choose from {','.join(FIGURES)}")
    for figure in list(only):
        only.update(NEEDS.get(figure, ()))
    args.only = only
    if min(args.threads) < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--threads and --repeats must be >= 1 and --warmup >= 0")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.quick:
        args.repeats = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    transformers.logging.set_verbosity_error()
    baseline_path = Path(args.baseline)
    baseline_path = baseline_path if baseline_path.is_absolute() else REPO_ROOT / baseline_path
    child_args = ["--device", args.device, "--baseline", str(baseline_path)] + (
        ["--quick"] if args.quick else []
    )
    workload = QUICK_WORKLOAD if args.quick else Workload()
    archs = make_archs(args.quick)
    device = torch.device(args.device)
    if args.memory_child:
        kind, arch_name = args.memory_child.split(":")
        torch.set_num_threads(args.threads[0])
        bench = Bench(device, 1, 0, workload, load_baseline(baseline_path) if kind == "d2l" else None)
        print(json.dumps(memory_step(bench, next(a for a in archs if a.name == arch_name), kind)))
        return 0

    print(
        f"device={device_name(device)}  torch={torch.__version__}  transformers={transformers.__version__}  "
        f"repeats={args.repeats} (median)  warmup={args.warmup}"
    )
    baseline = load_baseline(baseline_path)
    bench = Bench(device, args.repeats, args.warmup, workload, baseline)
    print(
        f"workload: train batch={workload.batch} src_len={workload.src_len} tgt_len={workload.tgt_len}; "
        f"greedy batch={workload.gen_batch}; beam batch={workload.beam_batch} beams={workload.num_beams}; "
        f"{workload.new_tokens} new tokens forced; one-at-a-time loops over {workload.sentences} sentences"
    )
    for arch in archs:
        print(f"arch     ours  {arch.name:<8} {describe_ours(arch.config())}")
        if baseline is not None:
            print(f"arch     d2l   {arch.name:<8} {describe_baseline(arch.baseline)}")
    print(
        "memory: growth of resident memory over one training step in a fresh process (CPU; "
        "allocator peak on CUDA): gradients + Adam moments (3 x params) + activations"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        results = run_figures(bench, archs, args.only, threads, child_args)
        summarize(results, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
