"""What if: replace one output token of a translation and let the model decode the rest.

The attention explorer's debugger ([`hf_seq2seq_attn.explorer`]): pick output position t of a hypothesis,
see the model's k most probable tokens at that step ([`top_alternatives`]), force one of them, and the
model decodes the rest ([`redecode`]): `generate()` is called with
`decoder_input_ids = [decoder start, y_1 .. y_{t-1}, chosen token]`, with the search that made the
original translation (greedy, or beam search with the same width, keeping its best hypothesis) and the
same length budget (the forced tokens count towards it).

Probabilities and scores are recomputed by one teacher-forced forward pass ([`score_tokens`]), the same
for the original and the new hypothesis, so the change in sequence log-probability compares like with like
(they are the model's own probabilities, before generation-time logits processors, of which the explorer
uses none). No gradio here: the page's handlers live in [`hf_seq2seq_attn.explorer.handlers`].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.alignment_seq2seq_attn import eos_ids
from ..tools.inference import default_max_new_tokens

# Alternatives offered at a step: enough to see the competition, few enough to read.
TOP_K = 5


@dataclass
class Alternative:
    """A token the model could have produced at a step.

    Attributes:
        token_id (`int`): its id.
        token (`str`): its token (`convert_ids_to_tokens`).
        probability (`float`): `p(token | source, y_<t)` under the model.
    """

    token_id: int
    token: str
    probability: float


@dataclass
class Redecoding:
    """A translation decoded again with a forced prefix.

    Attributes:
        prefix (`list[int]`): the `decoder_input_ids` given to `generate()`: decoder start, the P - 1 kept
            tokens, the chosen token.
        token_ids (`list[int]`): the T' tokens of the new translation (the forced ones first).
        tokens (`list[str]`), text (`str`): its tokens and decoded text (special tokens removed).
        attention (`np.ndarray`): `(N, T', S)` float32, row t = the attention behind token t.
        log_probs (`np.ndarray`): `(T',)` float64, log-probability of each token.
        original_log_probs (`np.ndarray`): `(T,)` float64, the same for the original hypothesis.
        num_beams (`int`): the search used for the rest (1 = greedy).
    """

    prefix: list[int]
    token_ids: list[int]
    tokens: list[str]
    text: str
    attention: np.ndarray
    log_probs: np.ndarray
    original_log_probs: np.ndarray
    num_beams: int = 1

    @property
    def log_prob(self) -> float:
        """Sequence log-probability of the new translation (sum over its tokens)."""
        return float(self.log_probs.sum())

    @property
    def original_log_prob(self) -> float:
        """Sequence log-probability of the original translation."""
        return float(self.original_log_probs.sum())


def _decoder_start(model: Any) -> int:
    """The id every decoder input starts with."""
    start = model.generation_config.decoder_start_token_id
    return int(start if start is not None else model.config.decoder_start_token_id)


@torch.no_grad()
def score_tokens(
    model: Any, source_ids: Sequence[int], token_ids: Sequence[int]
) -> tuple[np.ndarray, torch.Tensor]:
    """One teacher-forced forward over `start + token_ids[:-1]` (no cache).

    Returns:
        `(attention, log_probs)`: attention `(N, T, S)` float32 (the last attention layer) and the
        log-softmax of the logits `(T, V)` float64, row t = the distribution token t was drawn from.
    """
    device = model.device
    decoder_input_ids = torch.tensor([[_decoder_start(model), *token_ids[:-1]]], device=device)  # (1, T)
    input_ids = torch.tensor([list(source_ids)], device=device)  # (1, S)
    out = model(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        decoder_input_ids=decoder_input_ids,
        output_attentions=True,
        use_cache=False,
        return_dict=True,
    )
    attention = out.cross_attentions[-1][0].float().cpu().numpy()  # (N, T, S)
    return attention, torch.log_softmax(out.logits[0].double(), dim=-1).cpu()  # (T, V)


def token_log_probs(log_probs: torch.Tensor, token_ids: Sequence[int]) -> np.ndarray:
    """`(T, V)` log-probabilities -> `(T,)` the log-probability of each of the T tokens."""
    rows = torch.arange(len(token_ids))
    return log_probs[rows, torch.tensor(list(token_ids), dtype=torch.long)].numpy()


def _check_position(token_ids: Sequence[int], position: int) -> None:
    """Raise `ValueError` unless `position` is an output position of `token_ids`."""
    if not 0 <= position < len(token_ids):
        raise ValueError(
            f"position={position} is not an output position (the hypothesis has {len(token_ids)})."
        )


def top_alternatives(
    model: Any,
    tokenizer: Any,
    source_ids: Sequence[int],
    token_ids: Sequence[int],
    position: int,
    k: int = TOP_K,
) -> list[Alternative]:
    """The `k` most probable tokens at output position `position` (0-based), given the tokens before it.

    Returns:
        Up to `k` [`Alternative`], most probable first; their probabilities sum to at most 1.
    """
    _check_position(token_ids, position)
    _, log_probs = score_tokens(model, source_ids, token_ids[: position + 1])
    probs = log_probs[position].exp()  # (V,) float64, so the top-k sum stays <= 1
    top = torch.topk(probs, min(k, probs.shape[0]))
    ids = top.indices.tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return [
        Alternative(i, token, float(p)) for i, token, p in zip(ids, tokens, top.values.tolist(), strict=True)
    ]


def forced_prefix(model: Any, token_ids: Sequence[int], position: int, token_id: int) -> list[int]:
    """`decoder_input_ids` that force `token_id` at `position`: start, `token_ids[:position]`, `token_id`."""
    _check_position(token_ids, position)
    return [_decoder_start(model), *token_ids[:position], int(token_id)]


def _continue(
    model: Any, source_ids: Sequence[int], prefix: list[int], num_beams: int, max_new_tokens: int
) -> list[int]:
    """`generate()` from the forced `prefix` -> the generated ids after the decoder start (prefix included)."""
    input_ids = torch.tensor([list(source_ids)], device=model.device)  # (1, S)
    sequences = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        decoder_input_ids=torch.tensor([prefix], device=model.device),  # (1, P + 1)
        num_beams=num_beams,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        **({"length_penalty": 1.0} if num_beams > 1 else {}),
    )
    return sequences[0, 1:].tolist()


def _until_eos(ids: list[int], ends: set[int]) -> list[int]:
    """`ids` up to and including the first end-of-sequence id."""
    return next((ids[: k + 1] for k, token in enumerate(ids) if token in ends), ids)


@torch.no_grad()
def redecode(
    model: Any,
    tokenizer: Any,
    source_ids: Sequence[int],
    token_ids: Sequence[int],
    position: int,
    token_id: int,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
) -> Redecoding:
    """Force `token_id` at output `position` of the hypothesis `token_ids` and decode the rest.

    Args:
        source_ids: the S source ids.
        token_ids: the T ids of the original hypothesis.
        position (`int`): 0-based output position to replace.
        token_id (`int`): the token forced there.
        num_beams (`int`, defaults to 1): the search for the rest: 1 = greedy, k = beam search (its best).
        max_new_tokens (`int`, *optional*): length budget of the whole translation, the forced tokens
            included; defaults to the explorer's `2 * S + 10`.

    Returns:
        [`Redecoding`]. A forced end-of-sequence token, or a prefix that already fills the budget, ends the
        translation there without calling `generate()`.
    """
    prefix = forced_prefix(model, token_ids, position, token_id)
    budget = max_new_tokens if max_new_tokens is not None else default_max_new_tokens(len(source_ids))
    remaining = budget - (len(prefix) - 1)
    ends = eos_ids(model)
    ids = prefix[1:]
    if token_id not in ends and remaining > 0:
        ids = _until_eos(_continue(model, source_ids, prefix, num_beams, remaining), ends)
    attention, log_probs = score_tokens(model, source_ids, ids)
    _, original = score_tokens(model, source_ids, token_ids)
    return Redecoding(
        prefix=prefix,
        token_ids=ids,
        tokens=tokenizer.convert_ids_to_tokens(ids),
        text=tokenizer.decode(ids, skip_special_tokens=True),
        attention=attention,
        log_probs=token_log_probs(log_probs, ids),
        original_log_probs=token_log_probs(original, token_ids),
        num_beams=num_beams,
    )


__all__ = [
    "TOP_K",
    "Alternative",
    "Redecoding",
    "forced_prefix",
    "redecode",
    "score_tokens",
    "top_alternatives",
]
