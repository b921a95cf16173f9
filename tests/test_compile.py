"""`torch.compile` (what `--torch_compile True` does) gives the eager training step, for every decoder style.

The decoder's fast paths loop over target positions in Python, and inductor's decomposition of
`nn.GRU` / `nn.LSTM` loops over time steps too, so a compiled graph is specialised to its target length
T (source length and batch size may stay symbolic). The train command therefore pads each batch to a
multiple of `COMPILE_LENGTH_MULTIPLE` when compiling: batches of different lengths in one bucket share one
graph. Dynamo also needs `allow_rnn=True` to trace through the model's `nn.GRU`: without it every
access to the RNN weights breaks the graph and the decoder loop runs eagerly.

Compared in float64 so the tolerance can be the fast-path tests' 1e-10: the compiled kernels fuse and
reorder float sums, which in float64 moves results by ~1e-16 relative at these sizes. (In float32 the
same reordering moves the loss by up to ~5e-7 and gradients by up to ~2e-8 absolute, ~1e-4 relative
to a tensor's largest entry, measured on this tiny model; a float64 check is exact enough to catch any
real difference.) Slow: inductor compiles an unrolled forward and backward per style (~1 minute each on
a loaded CPU).
"""

import shutil

import pytest
import torch
from helpers import make_config, padded_batch

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.training.train import COMPILE_LENGTH_MULTIPLE

TIGHT = {"rtol": 1e-10, "atol": 1e-10}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("g++") is None and shutil.which("c++") is None,
        reason="torch.compile on CPU (inductor) builds C++ kernels and needs a C++ compiler (g++)",
    ),
]


def bucketed_batch(source_lengths, target_lengths, generator):
    """Right-padded `(input_ids, labels)`, both padded up to a multiple of `COMPILE_LENGTH_MULTIPLE` as the
    train command's collator does when compiling (labels padded with -100)."""
    source = padded_batch(source_lengths, generator=generator)
    labels = padded_batch(target_lengths, generator=generator)
    labels[labels == 0] = -100

    def pad(ids: torch.Tensor, value: int) -> torch.Tensor:
        width = -(-ids.shape[1] // COMPILE_LENGTH_MULTIPLE) * COMPILE_LENGTH_MULTIPLE
        return torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=value)

    return pad(source, 0), pad(labels, -100)


def loss_and_grads(module, model, input_ids, labels):
    """Loss and every parameter's gradient of one training step (`module` is `model` or its compiled wrapper)."""
    model.zero_grad()
    loss = module(input_ids=input_ids, labels=labels).loss
    loss.backward()
    return loss.detach(), {name: param.grad.clone() for name, param in model.named_parameters()}


@pytest.mark.parametrize(
    "decoder_style, input_feeding", [("bahdanau", False), ("luong", True), ("luong", False)]
)
def test_compiled_step_equals_eager_without_recompiling(decoder_style, input_feeding):
    torch._dynamo.reset()
    torch.manual_seed(0)
    config = make_config(decoder_style=decoder_style, input_feeding=input_feeding)
    model = Seq2SeqAttnForConditionalGeneration(config).double().train()
    compiled = torch.compile(model)  # as accelerate does for `--torch_compile True` (dynamic=None)
    generator = torch.Generator().manual_seed(1)
    # different raw source and target lengths, both in the first bucket
    batches = [
        bucketed_batch([6, 3, 5], [5, 4, 2], generator),
        bucketed_batch([7, 2, 4], [3, 7, 6], generator),
    ]
    graphs = []
    with torch._dynamo.config.patch(allow_rnn=True):
        for input_ids, labels in batches:
            eager_loss, eager_grads = loss_and_grads(model, model, input_ids, labels)
            loss, grads = loss_and_grads(compiled, model, input_ids, labels)
            torch.testing.assert_close(loss, eager_loss, **TIGHT)
            for name, grad in eager_grads.items():
                torch.testing.assert_close(grads[name], grad, **TIGHT, msg=lambda m, n=name: f"{n}: {m}")
            graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[0], "a second batch of the same length bucket compiled new graphs"
    # the decoder really ran compiled: no graph break at its RNN (which would leave its step loop eager)
    breaks = list(torch._dynamo.utils.counters["graph_break"])
    assert not [reason for reason in breaks if "Attempted to wrap RNN" in reason], breaks
