"""The vocabulary projection and the cross-entropy of a training step, computed chunk by chunk with their gradient.

Why: at the benchmark's default shape (64 x 30 target tokens, V 8000) the `(B T, V)` logits are 61 MB. The
plain path writes them, reads them for `log_softmax`, writes the log-probabilities, fills a zero gradient
of the same size for `nll_loss`, and reads two of them again in the backward: on a 2-core machine whose
one thread copies ~3 GB/s, that traffic took as long as the three matrix products themselves (446 ms of
a ~1.05 s step on one thread). Here the rows go through in chunks of `CHUNK_ROWS` (4 MB of logits, which
stay in cache): logits, log-sum-exp, loss, and at once the gradient `softmax - onehot` with its two
products (features and weights), as in Liger Kernel's fused linear cross-entropy. Same loss and
gradients (`tests/test_fused_loss.py`); ~0.2 s instead of 446 ms on one thread.

The forward computes the gradient, so it is only used when one will follow (training with labels);
the logits are then never materialised and the model returns `logits=None`. Rows labelled -100 are
left out before the projection, so padding costs nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from .fused_recurrence import eager_float

IGNORE_INDEX = -100
# Rows per chunk: 128 x V=8000 float32 logits = 4 MB. Measured at V 8000, E 256 on the 2-core Xeon
# (one thread / two): 32 rows 350/292 ms, 64 327/250, 128 251/172, 256 282/189, all rows 329/220.
CHUNK_ROWS = 128


def fused_loss_applies(training: bool, features: torch.Tensor) -> bool:
    """Whether [`linear_cross_entropy`] should compute this loss: training with gradients, where the
    hand-written training paths may run (`fused_recurrence.eager_float`: float32/64, no autocast, compile
    or export)."""
    return training and torch.is_grad_enabled() and eager_float(features.dtype)


class LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `features @ weight.T + bias` against `labels`, with its gradient made in the forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        features: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            features: `(N, E)`; weight: `(V, E)`; bias: `(V,)` or None; labels: `(N,)`, -100 = ignored.
        Returns:
            the summed loss over the labelled rows, a scalar.
        """
        rows = (labels != IGNORE_INDEX).nonzero().squeeze(1)  # (M,)
        kept, targets = features.index_select(0, rows), labels.index_select(0, rows)  # (M, E), (M,)
        grad_kept = torch.empty_like(kept)
        grad_weight = torch.zeros_like(weight)
        grad_bias = torch.zeros_like(bias) if bias is not None else None
        total = features.new_zeros(())
        # every chunk's logits in one buffer: a fresh (C, V) tensor per chunk is a cold one (~4 MB at V 8000),
        # while the same buffer stays in cache from chunk to chunk
        logits_buffer = kept.new_empty(min(CHUNK_ROWS, kept.shape[0]), weight.shape[0])
        for start in range(0, kept.shape[0], CHUNK_ROWS):
            x = kept[start : start + CHUNK_ROWS]  # (C, E)
            target = targets[start : start + CHUNK_ROWS]  # (C,)
            # mm, then the bias: `addmm` first copies the broadcast bias into the output, a slow pass; and
            # folding the bias in as an extra input column made the product's K odd (257), which cost more.
            # Through the transposed view: a contiguous (E, V) copy made the products ~10% faster on one
            # thread, but the copy itself is a slow strided pass (5 ms at V 8000): the loss was 9% slower on two.
            logits = torch.mm(x, weight.t(), out=logits_buffer[: x.shape[0]])  # (C, V)
            if bias is not None:
                logits += bias
            shift = logits.amax(dim=-1, keepdim=True)  # (C, 1)
            target_logit = logits.gather(1, target[:, None])
            exps = logits.sub_(shift).exp_()  # in place: the chunk's only (C, V) tensor
            norm = exps.sum(dim=-1, keepdim=True)  # (C, 1)
            total += (norm.log() + shift - target_logit).sum()
            # d loss / d logits = exps / norm - onehot(target); 1 / norm scales the (C, E) factors, not exps
            scale = norm.reciprocal()
            grad_x = torch.mm(exps, weight, out=grad_kept[start : start + CHUNK_ROWS]).mul_(scale)
            grad_x -= weight.index_select(0, target)
            grad_weight.addmm_(exps.t(), x * scale)
            grad_weight.index_add_(0, target, x, alpha=-1)
            if grad_bias is not None:
                grad_bias.addmv_(exps.t(), scale.squeeze(1))
                grad_bias.index_add_(0, target, scale.new_ones(target.shape[0]), alpha=-1)
        grad_features = torch.zeros_like(features).index_copy_(0, rows, grad_kept)
        ctx.save_for_backward(grad_features, grad_weight, grad_bias)
        ctx.has_bias = bias is not None
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        grad_features, grad_weight, grad_bias = ctx.saved_tensors
        return (
            grad_features * grad_total,
            grad_weight * grad_total,
            grad_bias * grad_total if ctx.has_bias else None,
            None,
        )


def linear_cross_entropy(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor
) -> torch.Tensor:
    """[`LinearCrossEntropy`] as a function: `features (N, E)`, `weight (V, E)`, `bias (V,)`, `labels (N,)`."""
    return LinearCrossEntropy.apply(features, weight, bias, labels)  # type: ignore[no-any-return]
