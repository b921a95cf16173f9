"""Generation figures: the decoding jobs (also timed by `backends` and `--compare_with`) and the `greedy`,
`beam`, `latency` and `step` figures. Every job decodes exactly `new_tokens` tokens (see
`workload.never_ending`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from .workload import D2L_NEVER_EOS, Arch, Bench


def generate_fn(
    model: Any, input_ids: torch.Tensor, new_tokens: int, num_beams: int = 1
) -> Callable[[], None]:
    """A `generate()` call of exactly `new_tokens` new tokens, for a model that never ends (see
    `workload.never_ending`; any model with that method: ours, or an ONNX Runtime one exported from ours)."""
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
