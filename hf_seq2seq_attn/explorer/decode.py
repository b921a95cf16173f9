"""What the explorer shows, computed: one `generate()` call -> the hypotheses and the attention behind each.

[`explore`] translates once (greedy, or beam search returning its n-best list) and returns an
[`Exploration`]: the source tokens, and for each hypothesis its tokens, score and cross-attention
`(N, T, S)`, beam hypotheses followed through `beam_indices` so each gets the weights its own prefix
produced. [`head_matrix`] picks one head (or the mean of the heads) of that attention, and
[`hypothesis_alignment`] derives the word alignment from it. A beam search also keeps its search tree
([`hf_seq2seq_attn.explorer.beamtree`], watched during that same call). No gradio here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList

from ..core.alignment_seq2seq_attn import Alignment, alignment_from_attention, eos_ids
from ..tools.inference import default_max_new_tokens
from .beamtree import BeamTree, SearchRecorder, beam_tree

# A tokenizer saved without `model_max_length` reports ~1e30; read at most this many source tokens then.
DEFAULT_MAX_SOURCE_TOKENS = 512
# Characters read from the text box; far more than any model reads, so only a paste of a book is clipped.
MAX_INPUT_CHARS = 20_000


@dataclass
class Hypothesis:
    """One translation of the source and the attention that produced it.

    Attributes:
        text (`str`): the decoded translation (special tokens removed).
        token_ids (`list[int]`): the T generated ids, the final `</s>` included when generated.
        tokens (`list[str]`): the T generated tokens (`convert_ids_to_tokens`).
        score (`float`): mean log-probability per generated token (beam search's length-normalised score
            with `length_penalty=1`; the same quantity for greedy search).
        attention (`np.ndarray`): `(N, T, S)` float32; row t is the attention the decoder used when it
            produced token t. Each row sums to 1 over the S source tokens.
    """

    text: str
    token_ids: list[int]
    tokens: list[str]
    score: float
    attention: np.ndarray


@dataclass
class Exploration:
    """Everything the page shows for one input and one model.

    Attributes:
        source_ids (`list[int]`): the S source ids the model read (`</s>` included).
        source_tokens (`list[str]`): their tokens.
        hypotheses (`list[Hypothesis]`): best first; one for greedy search, `num_beams` for beam search.
        num_beams (`int`): 1 = greedy.
        notices (`list[str]`): what the user should know about the input (e.g. it was truncated).
        source_text (`str`): the text translated, when it was not truncated (used to name source words).
        beam_tree ([`BeamTree`], *optional*): the search tree of a beam search (None for greedy).
    """

    source_ids: list[int]
    source_tokens: list[str]
    hypotheses: list[Hypothesis]
    num_beams: int = 1
    notices: list[str] = field(default_factory=list)
    source_text: str | None = None
    beam_tree: BeamTree | None = None

    @property
    def num_heads(self) -> int:
        return int(self.hypotheses[0].attention.shape[0]) if self.hypotheses else 1


def max_source_tokens(tokenizer: Any) -> int:
    """The longest source (in tokens, `</s>` included) the explorer feeds the model: the tokenizer's
    `model_max_length` (training's `--max_source_length`), or [`DEFAULT_MAX_SOURCE_TOKENS`] when unset."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit < 1 or limit > 100_000:
        return DEFAULT_MAX_SOURCE_TOKENS
    return limit


def encode_source(tokenizer: Any, text: str) -> tuple[list[int], list[str]]:
    """Token ids of `text`, truncated to [`max_source_tokens`] with `</s>` kept last, and notices.

    Returns:
        `(ids, notices)`: ids `(S,)`, and a sentence for the page when the text was clipped.
    """
    notices = []
    if len(text) > MAX_INPUT_CHARS:
        notices.append(
            f"The text has {len(text):,} characters; only the first {MAX_INPUT_CHARS:,} were read."
        )
        text = text[:MAX_INPUT_CHARS]
    ids = tokenizer(text)["input_ids"]
    limit = max_source_tokens(tokenizer)
    if len(ids) > limit:
        eos = tokenizer.eos_token_id
        tail = [eos] if eos is not None and ids[-1] == eos else []
        kept = ids[: limit - len(tail)] + tail
        notices.append(
            f"The text is {len(ids):,} tokens long; this model reads at most {limit} (its maximum source "
            f"length), so only the first {len(kept) - len(tail)} tokens were translated."
        )
        ids = kept
    return ids, notices


def _generated_length(ids: Sequence[int], eos_ids: set[int]) -> int:
    """Tokens up to and including the first `</s>` (all of them when none was generated)."""
    return next((k + 1 for k, token in enumerate(ids) if token in eos_ids), len(ids))


def step_attention(cross_attentions: Sequence[Sequence[torch.Tensor]], rows: Sequence[int]) -> np.ndarray:
    """Attention behind one returned sequence of `generate(output_attentions=True, return_dict_in_generate=True)`.

    Args:
        cross_attentions: tuple over steps of a 1-tuple of `(B * beams, N, 1, S)`.
        rows: for each of the T generated tokens, the row of the step's batch that produced it: the row
            itself in greedy search, `beam_indices[r, t]` in beam search (the beam that token t extended,
            flattened over the batch), so a hypothesis gets the weights its own prefix produced.
    Returns:
        `(N, T, S)` float32.
    """
    picked = [cross_attentions[t][-1][row, :, 0, :] for t, row in enumerate(rows)]  # T x (N, S)
    return torch.stack(picked, dim=1).float().cpu().numpy()  # (N, T, S)


def _check_explore_arguments(text: str, num_beams: int) -> None:
    """Raise for what [`explore`] cannot translate: a non-string, or a beam width outside 1..64."""
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}.")
    if not 1 <= num_beams <= 64:
        raise ValueError(f"num_beams must be between 1 and 64, got {num_beams}.")


def _generate(
    model: Any, source_ids: list[int], num_beams: int, max_new_tokens: int | None, processors: list[Any]
) -> Any:
    """One `generate()` call returning every hypothesis with its scores and cross-attention.

    `processors` are extra `LogitsProcessor`s (the beam tree's observer, which changes no score).

    Returns:
        The `generate` output: `sequences (num_beams, 1 + T)`, `scores`, `cross_attentions`, and for
        beam search `sequences_scores (num_beams,)` and `beam_indices (num_beams, T)`.
    """
    input_ids = torch.tensor([source_ids], device=model.device)  # (1, S)
    limit = max_new_tokens if max_new_tokens is not None else default_max_new_tokens(len(source_ids))
    if limit < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {limit}.")
    return model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        max_new_tokens=limit,
        output_attentions=True,
        output_scores=True,
        return_dict_in_generate=True,
        logits_processor=LogitsProcessorList(processors),
        **({"length_penalty": 1.0} if num_beams > 1 else {}),
    )


def _greedy_rows(output: Any, r: int, eos_ids: set[int]) -> tuple[list[int], float]:
    """Batch rows behind sequence `r` of a greedy search (`r` at every step) and its mean log-probability."""
    generated = output.sequences[r, 1:].tolist()
    length = _generated_length(generated, eos_ids)
    log_probs = [torch.log_softmax(output.scores[t][r].float(), dim=-1)[generated[t]] for t in range(length)]
    score = float(torch.stack(log_probs).mean()) if log_probs else float("nan")
    return [r] * length, score


def _beam_rows(output: Any, r: int, eos_ids: set[int]) -> tuple[list[int], float]:
    """Batch rows behind sequence `r` of a beam search (its `beam_indices`, up to its first `</s>`) and
    its length-normalised score."""
    generated = output.sequences[r, 1:].tolist()
    rows = [int(i) for i in output.beam_indices[r].tolist() if i >= 0]  # -1 pads the steps after it ended
    length = min(len(rows), _generated_length(generated, eos_ids))
    return rows[:length], float(output.sequences_scores[r])


def _hypothesis(tokenizer: Any, output: Any, r: int, beam: bool, eos_ids: set[int]) -> Hypothesis | None:
    """Sequence `r` of a `generate` output as a [`Hypothesis`] (None when it generated no token)."""
    rows, score = (_beam_rows if beam else _greedy_rows)(output, r, eos_ids)
    ids = output.sequences[r, 1 : 1 + len(rows)].tolist()  # the T generated ids, one per row
    if not ids:
        return None
    return Hypothesis(
        text=tokenizer.decode(ids, skip_special_tokens=True),
        token_ids=ids,
        tokens=tokenizer.convert_ids_to_tokens(ids),
        score=score,
        attention=step_attention(output.cross_attentions, rows),
    )


@torch.no_grad()
def explore(
    model: Any,
    tokenizer: Any,
    text: str,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
) -> Exploration:
    """Translate `text` once and keep, for each returned hypothesis, the attention that produced it.

    Args:
        model: a [`Seq2SeqAttnForConditionalGeneration`] (or any encoder-decoder whose `generate` returns
            `cross_attentions`).
        tokenizer: its tokenizer.
        text (`str`): the source; clipped to the model's maximum source length (see [`encode_source`]).
        num_beams (`int`, defaults to 1): 1 = greedy search (one hypothesis); k > 1 = beam search returning
            all k hypotheses, best first.
        max_new_tokens (`int`, *optional*): defaults to `2 * S + 10`.

    Returns:
        [`Exploration`].
    """
    _check_explore_arguments(text, num_beams)
    source_ids, notices = encode_source(tokenizer, text)
    recorder = SearchRecorder()
    output = _generate(model, source_ids, num_beams, max_new_tokens, [recorder] if num_beams > 1 else [])
    ends = eos_ids(model)
    found = (_hypothesis(tokenizer, output, r, num_beams > 1, ends) for r in range(output.sequences.shape[0]))
    hypotheses = [hypothesis for hypothesis in found if hypothesis is not None]
    lengths = [len(hypothesis.token_ids) for hypothesis in hypotheses]
    return Exploration(
        source_ids=list(source_ids),
        source_tokens=tokenizer.convert_ids_to_tokens(source_ids),
        hypotheses=hypotheses,
        num_beams=num_beams,
        notices=notices,
        source_text=None if notices else text,
        beam_tree=beam_tree(output, recorder.steps, tokenizer, lengths, num_beams) if num_beams > 1 else None,
    )


def head_matrix(attention: np.ndarray, head: int | None = None) -> np.ndarray:
    """`(N, T, S)` attention to the `(T, S)` map of head `head` (0-based), or the mean of the heads (None)."""
    if attention.ndim != 3:
        raise ValueError(f"Expected attention of shape (N, T, S), got {tuple(attention.shape)}.")
    if head is None:
        return attention.mean(axis=0)
    if not 0 <= head < attention.shape[0]:
        raise ValueError(f"head={head} does not exist: the model has {attention.shape[0]} head(s).")
    return attention[head]


def hypothesis_alignment(
    tokenizer: Any, exploration: Exploration, index: int = 0, head: int | None = None
) -> Alignment:
    """The word alignment of hypothesis `index` from its own attention."""
    hypothesis = exploration.hypotheses[index]
    weights = np.ascontiguousarray(hypothesis.attention.transpose(1, 0, 2))  # (T, N, S)
    return alignment_from_attention(
        tokenizer,
        exploration.source_ids,
        hypothesis.token_ids,
        weights,
        head=head,
        source=exploration.source_text,
    )
