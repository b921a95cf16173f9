"""The encoder's two directions on two threads (`core/parallel_rnn.py`) equal `nn.GRU` / `nn.LSTM` / `nn.RNN`.

`Seq2SeqAttnEncoder` runs `bidirectional_rnn` while training on a CPU with two or more threads. Here it runs
beside torch's own module (packed where rows are padded, as the encoder runs it) on the same batch in float64:
every output, the final states and the gradients of the input and of every weight must agree to 1e-12. The
two are independent code paths (torch's fused bidirectional layer against one direction at a time, the
reverse one on sequences reversed within their lengths); float64 reassociation moves results by ~1e-15.
"""

import itertools
import threading

import pytest
import torch
from helpers import make_config, padded_batch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from hf_seq2seq_attn import Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core import parallel_rnn

TIGHT = {"rtol": 1e-12, "atol": 1e-12}
RNNS = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}


@pytest.fixture
def two_threads(monkeypatch):
    """Two intra-op threads, and the size floor lowered so the tests' tiny RNNs take the path."""
    monkeypatch.setattr(parallel_rnn, "MIN_BATCH", 1)
    monkeypatch.setattr(parallel_rnn, "MIN_HIDDEN", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def torch_rnn(rnn, inputs, lengths):
    """What the encoder did before: the module itself, on a packed batch where rows are padded."""
    if lengths is None:
        return rnn(inputs)
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    states, final = rnn(packed)
    return pad_packed_sequence(states, batch_first=True, total_length=inputs.shape[1])[0], final


def probed_grads(run, rnn, inputs, lengths):
    """Outputs and the gradients of the input and every weight under fixed random probes of all outputs."""
    states, final = run(rnn, inputs, lengths)
    outputs = [states, *(final if isinstance(final, tuple) else (final,))]
    generator = torch.Generator().manual_seed(1)
    loss = sum((out * torch.randn(out.shape, generator=generator, dtype=out.dtype)).sum() for out in outputs)
    return outputs, torch.autograd.grad(loss, [inputs, *rnn.parameters()])


@pytest.mark.parametrize(
    ("rnn_type", "layers", "lengths"),
    list(itertools.product(["gru", "lstm", "rnn"], [1, 2], [None, [7, 2, 5, 7]])),
)
def test_both_directions_at_once_equal_the_torch_module(two_threads, rnn_type, layers, lengths):
    torch.manual_seed(0)
    rnn = RNNS[rnn_type](5, 4, num_layers=layers, batch_first=True, bidirectional=True).double()
    inputs = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor(lengths) if lengths is not None else None
    assert parallel_rnn.parallel_directions_apply(rnn, inputs)
    theirs, their_grads = probed_grads(torch_rnn, rnn, inputs, lengths)
    ours, our_grads = probed_grads(parallel_rnn.bidirectional_rnn, rnn, inputs, lengths)
    for mine, reference in zip([*ours, *our_grads], [*theirs, *their_grads], strict=True):
        torch.testing.assert_close(mine, reference, **TIGHT)


def test_the_encoder_runs_it_while_training_and_agrees_with_the_module_path(two_threads, monkeypatch):
    """A training step's loss and gradients with the parallel encoder equal those of the module's own path."""
    torch.manual_seed(0)
    model = Seq2SeqAttnForConditionalGeneration(make_config(encoder_layers=2)).double().train()
    source, target = padded_batch([6, 3, 5]), padded_batch([5, 4, 5])
    labels = target.masked_fill(target == 0, -100)

    def step():
        model.zero_grad()
        loss = model(input_ids=source, attention_mask=source != 0, labels=labels).loss
        loss.backward()
        return loss.detach(), {
            name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None
        }

    calls = []
    real = parallel_rnn.bidirectional_rnn
    monkeypatch.setattr(
        "hf_seq2seq_attn.core.modeling_seq2seq_attn.bidirectional_rnn", lambda *a: calls.append(1) or real(*a)
    )
    ours, our_grads = step()
    assert calls == [1]
    monkeypatch.setattr(
        "hf_seq2seq_attn.core.modeling_seq2seq_attn.parallel_directions_apply", lambda *a: False
    )
    theirs, their_grads = step()
    torch.testing.assert_close(ours, theirs, **TIGHT)
    assert our_grads.keys() == their_grads.keys()
    for name in their_grads:
        torch.testing.assert_close(our_grads[name], their_grads[name], **TIGHT, msg=name)


def test_small_batches_and_hidden_sizes_keep_the_module():
    """Measured slower there (see `MIN_BATCH`): the default floor leaves them to `nn.GRU`."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        big = torch.nn.GRU(5, parallel_rnn.MIN_HIDDEN, batch_first=True, bidirectional=True)
        small = torch.nn.GRU(5, parallel_rnn.MIN_HIDDEN // 2, batch_first=True, bidirectional=True)
        assert parallel_rnn.parallel_directions_apply(big, torch.randn(parallel_rnn.MIN_BATCH, 3, 5))
        assert not parallel_rnn.parallel_directions_apply(big, torch.randn(parallel_rnn.MIN_BATCH // 2, 3, 5))
        assert not parallel_rnn.parallel_directions_apply(small, torch.randn(parallel_rnn.MIN_BATCH, 3, 5))
    finally:
        torch.set_num_threads(before)


def test_one_thread_no_grad_and_unidirectional_keep_the_module(two_threads):
    rnn = torch.nn.GRU(5, 4, batch_first=True, bidirectional=True)
    inputs = torch.randn(2, 3, 5)
    assert parallel_rnn.parallel_directions_apply(rnn, inputs)
    with torch.no_grad():
        assert not parallel_rnn.parallel_directions_apply(rnn, inputs)
    assert not parallel_rnn.parallel_directions_apply(torch.nn.GRU(5, 4, batch_first=True), inputs)
    torch.set_num_threads(1)
    assert not parallel_rnn.parallel_directions_apply(rnn, inputs)


def test_a_second_backward_with_retain_graph_agrees(two_threads):
    torch.manual_seed(0)
    rnn = torch.nn.GRU(5, 4, batch_first=True, bidirectional=True).double()
    inputs = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    states, final = parallel_rnn.bidirectional_rnn(rnn, inputs, torch.tensor([6, 4, 1]))
    loss = states.sum() + final.sum()
    first = torch.autograd.grad(loss, [inputs, *rnn.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [inputs, *rnn.parameters()])
    # the same graph walked twice: equal but for BLAS kernels whose last bits may follow buffer alignment
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, **TIGHT)


def test_a_failing_branch_raises_in_the_caller_and_restores_the_thread_count(two_threads):
    seen = []

    def branch(index):
        seen.append((index, threading.current_thread() is threading.main_thread(), torch.get_num_threads()))
        if index == 1:
            raise ValueError("worker failed")
        return index

    with pytest.raises(ValueError, match="worker failed"):
        parallel_rnn.in_parallel(branch)
    assert torch.get_num_threads() == 2
    assert sorted(seen) == [(0, True, 1), (1, False, 1)]  # each side ran with one intra-op thread
    assert parallel_rnn.in_parallel(lambda index: index * 10) == (0, 10)


def test_reverse_within_keeps_padding_in_place_and_is_its_own_inverse():
    x = torch.arange(12.0).reshape(2, 6, 1)
    lengths = torch.tensor([6, 3])
    reversed_ = parallel_rnn.reverse_within(x, lengths)
    assert reversed_[:, :, 0].tolist() == [[5, 4, 3, 2, 1, 0], [8, 7, 6, 9, 10, 11]]
    assert torch.equal(parallel_rnn.reverse_within(reversed_, lengths), x)
    assert torch.equal(parallel_rnn.reverse_within(x, None), x.flip(1))
