"""Nearest training sentences: the training pairs whose encoder states, and the training tokens whose decoder
states, are closest to the typed sentence's.

`seq2seq-attn explore --model M --neighbors FILE` reads up to `--neighbors_max` pairs of a training file
(JSON Lines / CSV / TSV with `source` / `target` columns, read by the training reader
[`hf_seq2seq_attn.training.corpus.stream_pairs`] with the same row checks), runs the model over them once
with teacher forcing ([`build_index`], batches of [`BATCH_SIZE`] sorted by length, a tqdm bar) and caches
the vectors ([`load_or_build_index`]). For a translation, [`nearest`] returns the k pairs closest to the
source, and [`nearest_tokens`] the k training tokens closest to each output token.

**Sentences.** The vector of a sentence is the **mean of its encoder states over the real (non-pad)
positions**, unit-normalised, compared by cosine similarity. Not the encoder's final summary state: that
state is the last forward and first backward RNN step, which weigh the ends of a sentence most, while the
decoder reads every position through attention; the mean does too, and exists for every `bridge` setting.

**Tokens.** The vector of target token t is the decoder's read-out state that predicted it (the `(E,)`
vector the vocabulary projection reads, after attention), with the reference prefix forced: the same
state Seq2Seq-Vis (Strobelt et al. 2018) compares. An output token of the typed sentence gets the state of
the same computation over its own hypothesis, so "near" means "the decoder was in a similar state when it
wrote this". There are ~30 tokens per Bible verse, so 30,000 pairs give ~0.9M vectors: states wider
than [`TOKEN_DIMS`] are projected onto their top principal directions (the eigenvectors of the unit
states' second moment, fitted on an evenly spread sample of [`FIT_PAIRS`] pairs) and stored in float16
(64 dims and int32 rows and positions: 136 bytes a token, against 1 KB at full width 256 in float32).
[`TokenIndex.kept`] says how much of the states' energy the projection keeps (84% for the `bible` recipe's
model, E = 256); states no wider than `TOKEN_DIMS` are kept whole (exact search).

The search is exact brute force over the stored vectors: one `(M, K) @ (K,)` matmul and a top-k for a
sentence; chunks of [`SEARCH_CHUNK`] rows of `(N, D) @ (D, T)` for the T output tokens. Measured on the
bundled Bible data (all 28,008 training pairs, a default-size model, K = 512, 57 MB of sentence vectors)
on 2 CPU threads of a loaded machine: 1.3 ms per sentence query (4.8 ms with encoding the typed
sentence). An approximate-neighbour library (faiss, annoy, scikit-learn) would add a dependency and a
second index format to save milliseconds a query; it earns its place at tens of millions of rows, not at
`--neighbors_max` 30,000.

The cache holds `<key>.safetensors` (the vectors, token rows and positions, and the projection; never
pickle) and `<key>.json` (the pairs, the file and N), where the key hashes the file's bytes, N, the
model's weights, the tokenizer and the maximum source length: any change builds again. It lives in
`<model folder>/explorer_neighbors/`, or under the user cache (`$XDG_CACHE_HOME` or `~/.cache`,
`hf_seq2seq_attn/explorer_neighbors/`) when the model is a Hub id or its folder is not writable.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .decode import max_source_tokens

logger = logging.getLogger(__name__)

NEIGHBORS_MAX = 30_000  # `--neighbors_max`: training pairs encoded
NEIGHBORS_K = 5  # pairs listed for a typed sentence
TOKEN_K = 3  # training tokens listed for each output token
BATCH_SIZE = 256  # pairs per model call
TOKEN_DIMS = 64  # decoder states wider than this are projected to this many principal directions
FIT_PAIRS = 2_000  # pairs whose decoder states fit that projection
SEARCH_CHUNK = 1 << 18  # token vectors compared per matmul (bounds the float32 copy to ~64 MB)
CACHE_FOLDER = "explorer_neighbors"
CACHE_VERSION = 3  # bump when the vectors change meaning (pooling, normalisation, projection)


@dataclass
class Neighbor:
    """One training pair near the typed sentence: its texts, its row in the file's pairs, and similarity."""

    source: str
    target: str
    row: int
    similarity: float


@dataclass
class TokenNeighbor:
    """One training token whose decoder state is near an output token's: its pair, its position among the
    pair's target tokens (0-based, [`target_ids`]), and the cosine similarity of the two states."""

    source: str
    target: str
    row: int
    position: int
    similarity: float


@dataclass
class TokenIndex:
    """The decoder state of every target token of the encoded pairs.

    Attributes:
        vectors (`torch.Tensor`): `(N, D)` float16, unit length (projected when `projection` is set).
        rows (`torch.Tensor`): `(N,)` int32, the pair of each token.
        positions (`torch.Tensor`): `(N,)` int32, the token's position in its pair's target.
        projection (`torch.Tensor`, *optional*): `(E, D)` float32 orthonormal columns; None = full width.
        kept (`float`): the fraction of the unit states' energy inside the projection (1.0 without one).
    """

    vectors: torch.Tensor
    rows: torch.Tensor
    positions: torch.Tensor
    projection: torch.Tensor | None = None
    kept: float = 1.0


@dataclass
class NeighborIndex:
    """The encoded training pairs of one model.

    Attributes:
        vectors (`torch.Tensor`): `(M, K)` float32, unit length (mean-pooled encoder states).
        sources, targets (`list[str]`): the M pairs, in file order.
        path (`str`): the training file.
        tokens ([`TokenIndex`], *optional*): the decoder states of their target tokens.
        cache_file (`str`, *optional*): the `.safetensors` file the vectors were loaded from or saved to.
    """

    vectors: torch.Tensor
    sources: list[str]
    targets: list[str]
    path: str
    tokens: TokenIndex | None = None
    cache_file: str | None = None


def read_pairs(path: str, limit: int = NEIGHBORS_MAX) -> tuple[list[str], list[str]]:
    """The first `limit` usable (source, target) pairs of a training file, streamed (the rest is not read).

    Raises:
        `DataError` (a `ValueError`): naming the file, the line and the fix.
    """
    from ..training.corpus import stream_pairs

    if limit < 1:
        raise ValueError(f"--neighbors_max must be at least 1, got {limit}.")
    pairs = stream_pairs(path, ("source", "target", None, None), bad_rows="skip").head(limit)
    sources, targets = [], []
    for source, target in pairs.pairs():
        sources.append(source)
        targets.append(target)
    return sources, targets


def _cut(rows: list[list[int]], limit: int, eos: int | None) -> list[list[int]]:
    """Each id list cut to `limit` ids, `</s>` kept last where it ended one."""
    cut = []
    for ids in rows:
        if len(ids) > limit:
            tail = [eos] if eos is not None and ids[-1] == eos else []
            ids = ids[: limit - len(tail)] + tail
        cut.append(ids)
    return cut


def source_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, cut to [`max_source_tokens`] with `</s>` kept last, as the explorer reads
    a typed sentence ([`hf_seq2seq_attn.explorer.decode.encode_source`]); one batched tokenizer call."""
    ids = tokenizer(list(texts))["input_ids"]
    return _cut(ids, max_source_tokens(tokenizer), tokenizer.eos_token_id)


def target_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Target token ids of each text (`text_target`, ending in `</s>`), cut like [`source_ids`]."""
    ids = tokenizer(text_target=list(texts))["input_ids"]
    return _cut(ids, max_source_tokens(tokenizer), tokenizer.eos_token_id)


@dataclass
class Encoded:
    """What [`encode_pairs`] computes for M pairs.

    Attributes:
        sentences: `(M, K)` float32 unit mean-pooled encoder states, rows in the order given.
        tokens: `(N, D)` float32 unit decoder states of all target tokens (projected when asked), pair by
            pair in the order given, each pair's tokens in order; `(0, D)` without targets.
        rows, positions: `(N,)` int64, each token's pair and position.
    """

    sentences: torch.Tensor
    tokens: torch.Tensor
    rows: torch.Tensor
    positions: torch.Tensor


def _token_order(rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The permutation that sorts tokens by (pair, position)."""
    return torch.argsort(rows * (int(positions.max()) + 1 if positions.numel() else 1) + positions)


@torch.no_grad()
def encode_pairs(
    model: Any,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]] | None = None,
    projection: torch.Tensor | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> Encoded:
    """Run the model over M pairs in batches of `batch_size` sorted by length (little padding).

    Without `targets` only the encoder runs. With them, one teacher-forced pass (`decoder_input_ids` =
    the start token, then the target shifted right) also gives each target token's read-out state: the
    `(E,)` vector the vocabulary projection reads when it predicts that token.

    Args:
        sources: M lists of source ids (each non-empty); targets: M lists of target ids ending in `</s>`.
        projection: `(E, D)`; token states are unit-normalised, projected, and normalised again.
        progress: show a tqdm bar counting pairs.
    """
    from tqdm.auto import tqdm

    base, pad = model.base_model, model.config.resolved_pad_token_id
    start_id = model.config.resolved_decoder_start_token_id
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]) + (len(targets[i]) if targets else 0))
    sentences: torch.Tensor | None = None
    tokens, token_rows, token_positions = [], [], []
    with tqdm(total=len(sources), unit="pair", desc="Encoding training pairs", disable=not progress) as bar:
        for begin in range(0, len(order), batch_size):
            rows = order[begin : begin + batch_size]
            batch, mask = padded_batch(sources, rows, pad)  # (B, S), (B, S)
            batch, mask = batch.to(model.device), mask.to(model.device)
            if targets is None:
                states = base.get_encoder()(input_ids=batch, attention_mask=mask).last_hidden_state
            else:
                shifted = [[start_id, *targets[row][:-1]] for row in rows]
                decoder_ids, decoder_mask = padded_batch(shifted, range(len(rows)), pad)  # (B, T), (B, T)
                decoded = base.decode(batch, mask, decoder_ids.to(model.device))
                states = decoded.encoded.last_hidden_state
                features = decoded.features.float().cpu()[decoder_mask]  # (n, E): real positions only
                tokens.append(project_states(features, projection))
                token_rows.append(torch.tensor(rows)[:, None].expand_as(decoder_mask)[decoder_mask])
                token_positions.append(
                    torch.arange(decoder_mask.shape[1]).expand_as(decoder_mask)[decoder_mask]
                )
            pooled = mean_pooled(states, mask).float().cpu()  # (B, K)
            if sentences is None:
                sentences = torch.empty(len(sources), pooled.shape[1])  # (M, K)
            sentences[rows] = pooled
            bar.update(len(rows))
    assert sentences is not None, "at least one pair"
    width = projection.shape[1] if projection is not None else model.config.embedding_size
    if not tokens:
        empty = torch.zeros(0, dtype=torch.long)
        return Encoded(sentences, torch.zeros(0, width), empty, empty)
    rows_all, positions_all = torch.cat(token_rows), torch.cat(token_positions)
    sort = _token_order(rows_all, positions_all)  # pair order, as the caller gave the pairs
    return Encoded(sentences, torch.cat(tokens)[sort], rows_all[sort], positions_all[sort])


def sentence_vectors(
    model: Any, ids: Sequence[Sequence[int]], batch_size: int = BATCH_SIZE, progress: bool = False
) -> torch.Tensor:
    """Unit-length mean-pooled encoder states of each source ([`encode_pairs`] without targets).

    Args:
        ids: M lists of token ids (each non-empty).
    Returns:
        `(M, K)` float32 on the CPU, rows in the order of `ids`.
    """
    return encode_pairs(model, ids, batch_size=batch_size, progress=progress).sentences


def padded_batch(
    ids: Sequence[Sequence[int]], rows: Sequence[int], pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequences `ids[row]` of `rows`, right-padded with `pad`: ids `(B, S)` and bool mask `(B, S)`."""
    lengths = torch.tensor([len(ids[row]) for row in rows])  # (B,)
    batch = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)  # (B, S)
    for b, row in enumerate(rows):
        batch[b, : len(ids[row])] = torch.tensor(ids[row])
    mask = torch.arange(batch.shape[1])[None, :] < lengths[:, None]  # (B, S)
    return batch, mask


def mean_pooled(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unit-length mean of `states (B, S, K)` over the positions where `mask (B, S)` is True -> `(B, K)`."""
    summed = (states * mask[..., None]).sum(dim=1)  # (B, K)
    mean = summed / mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, K)
    return torch.nn.functional.normalize(mean, dim=-1)


def project_states(states: torch.Tensor, projection: torch.Tensor | None) -> torch.Tensor:
    """`(n, E)` states -> `(n, D)` unit vectors: normalised, projected by `projection (E, D)` when given,
    normalised again (cosine similarity within the projected space)."""
    unit = torch.nn.functional.normalize(states.float(), dim=-1)
    if projection is None:
        return unit
    return torch.nn.functional.normalize(unit @ projection, dim=-1)


def fit_projection(states: torch.Tensor, dims: int = TOKEN_DIMS) -> tuple[torch.Tensor | None, float]:
    """The `dims` principal directions of unit states `(n, E)` (eigenvectors of their second moment,
    computed in float64), and the fraction of the states' energy they keep; `(None, 1.0)` when
    `E <= dims` (nothing to gain).

    Returns:
        `(E, dims)` float32 with orthonormal columns, strongest direction first, and the kept fraction.
    """
    width = states.shape[1]
    if width <= dims:
        return None, 1.0
    unit = torch.nn.functional.normalize(states.double(), dim=-1)
    values, vectors = torch.linalg.eigh(unit.T @ unit)  # ascending eigenvalues of the (E, E) moment
    kept = float(values[-dims:].sum() / values.sum())
    return vectors[:, -dims:].flip(-1).float().contiguous(), kept


def spread_sample(count: int, size: int = FIT_PAIRS) -> list[int]:
    """`min(size, count)` row numbers spread evenly over `range(count)` (the file's start and end alike)."""
    if count <= size:
        return list(range(count))
    return sorted({round(i * (count - 1) / (size - 1)) for i in range(size)})


def build_index(model: Any, tokenizer: Any, path: str, limit: int = NEIGHBORS_MAX) -> NeighborIndex:
    """Read up to `limit` pairs of `path` and encode them (a progress bar on stderr): their sources' mean
    encoder states, and the decoder state of every target token, projected ([`fit_projection`] on
    [`spread_sample`]) when wider than [`TOKEN_DIMS`]."""
    sources, targets = read_pairs(path, limit)
    source_rows, target_rows = source_ids(tokenizer, sources), target_ids(tokenizer, targets)
    projection, kept = None, 1.0
    if model.config.embedding_size > TOKEN_DIMS:
        sample = spread_sample(len(sources))
        fitted = encode_pairs(model, [source_rows[i] for i in sample], [target_rows[i] for i in sample])
        projection, kept = fit_projection(fitted.tokens, TOKEN_DIMS)
        logger.info("decoder states: %d dims keep %.1f%% of their energy", TOKEN_DIMS, 100 * kept)
    encoded = encode_pairs(model, source_rows, target_rows, projection, progress=True)
    # float16 vectors and int32 rows / positions: 136 bytes a token at 64 dims
    rows, positions = encoded.rows.int(), encoded.positions.int()
    tokens = TokenIndex(encoded.tokens.half(), rows, positions, projection, kept)
    return NeighborIndex(encoded.sentences, sources, targets, path, tokens)


def _file_digest(path: str) -> str:
    """sha256 of the file's bytes (a changed training file builds a new index)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tokenizer_digest(tokenizer: Any) -> str:
    """What the tokenizer does to text: its `tokenizers` state, else its vocabulary."""
    from ..training.corpus import tokenizer_fingerprint

    try:
        return tokenizer_fingerprint(tokenizer)
    except TypeError:
        return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()


def index_key(model: Any, tokenizer: Any, path: str, limit: int) -> str:
    """The cache name of an index: a hash of the file's bytes, `limit`, the weights of the encoder and the
    decoder (the vectors depend on both; not on the vocabulary projection), the tokenizer and its maximum
    source length."""
    digest = hashlib.sha256()
    for part in (
        CACHE_VERSION,
        _file_digest(path),
        limit,
        _tokenizer_digest(tokenizer),
        max_source_tokens(tokenizer),
    ):
        digest.update(f"{part}\0".encode())
    for name, tensor in sorted(model.base_model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/hf_seq2seq_attn/explorer_neighbors` (`~/.cache/...` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "hf_seq2seq_attn" / CACHE_FOLDER


def cache_dirs(model_name: str) -> list[Path]:
    """Where an index of model `model_name` may be cached, in order: beside a local model, the user cache."""
    folder = Path(model_name)
    beside = [folder / CACHE_FOLDER] if folder.is_dir() and os.access(folder, os.W_OK) else []
    return beside + [user_cache_dir()]


TOKEN_TENSORS = ("token_vectors", "token_rows", "token_positions")


def _load_cached(folder: Path, key: str, path: str) -> NeighborIndex | None:
    """The index cached as `folder/<key>.safetensors` + `.json`, or None when absent or unreadable."""
    from safetensors.torch import load_file

    vectors_file, pairs_file = folder / f"{key}.safetensors", folder / f"{key}.json"
    if not (vectors_file.is_file() and pairs_file.is_file()):
        return None
    try:
        pairs = json.loads(pairs_file.read_text(encoding="utf-8"))
        tensors = load_file(str(vectors_file))
        vectors = tensors["vectors"]  # (M, K)
        token_vectors, rows, positions = (tensors[name] for name in TOKEN_TENSORS)
        tokens = TokenIndex(token_vectors, rows, positions, tensors.get("projection"), float(pairs["kept"]))
    except (OSError, ValueError, KeyError) as err:
        logger.warning("ignoring the unreadable neighbour cache %s: %s", vectors_file, err)
        return None
    if (
        vectors.shape[0] != len(pairs["sources"])
        or not rows.shape[0] == positions.shape[0] == token_vectors.shape[0]
    ):
        return None
    return NeighborIndex(vectors, pairs["sources"], pairs["targets"], path, tokens, str(vectors_file))


def _save(folder: Path, key: str, index: NeighborIndex, limit: int) -> str:
    """Write the index into `folder` (each file whole or not at all); returns the `.safetensors` path."""
    from safetensors.torch import save_file

    assert index.tokens is not None, "a built index has its token states"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = {
        "file": os.path.abspath(index.path),
        "limit": limit,
        "sources": index.sources,
        "targets": index.targets,
        "kept": index.tokens.kept,
    }
    with tempfile.NamedTemporaryFile(
        "w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        json.dump(pairs, handle, ensure_ascii=False)
    os.replace(handle.name, folder / f"{key}.json")
    tokens = index.tokens
    tensors = {"vectors": index.vectors, "token_vectors": tokens.vectors}
    tensors |= {"token_rows": tokens.rows, "token_positions": tokens.positions}
    if tokens.projection is not None:
        tensors["projection"] = tokens.projection
    temporary = str(folder / f"{key}.safetensors.{os.getpid()}.tmp")
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, temporary)
    os.replace(temporary, folder / f"{key}.safetensors")
    return str(folder / f"{key}.safetensors")


def load_or_build_index(
    model_name: str, model: Any, tokenizer: Any, path: str, limit: int = NEIGHBORS_MAX
) -> NeighborIndex:
    """The index of `path` for the model loaded from `model_name`: from the cache, else built and cached
    (beside the model when its folder is writable, else under the user cache: [`cache_dirs`])."""
    key = index_key(model, tokenizer, path, limit)
    folders = cache_dirs(model_name)
    for folder in folders:
        cached = _load_cached(folder, key, path)
        if cached is not None:
            logger.info("neighbours of %s: %d pairs from %s", path, len(cached.sources), cached.cache_file)
            return cached
    index = build_index(model, tokenizer, path, limit)
    for folder in folders:
        try:
            index.cache_file = _save(folder, key, index, limit)
            break
        except OSError as err:
            logger.warning("could not cache the neighbours in %s: %s", folder, err)
    return index


def nearest(
    model: Any, tokenizer: Any, index: NeighborIndex, text: str, k: int = NEIGHBORS_K
) -> list[Neighbor]:
    """The `k` training pairs whose vectors are closest (cosine) to `text`'s, most similar first."""
    return nearest_to_source(model, index, source_ids(tokenizer, [text])[0], k)


def nearest_to_source(
    model: Any, index: NeighborIndex, ids: Sequence[int], k: int = NEIGHBORS_K
) -> list[Neighbor]:
    """The `k` training pairs whose vectors are closest (cosine) to source `ids (S,)`, most similar first."""
    query = sentence_vectors(model, [ids])[0]  # (K,)
    similarities = index.vectors @ query  # (M,): unit vectors, so cosine
    top = torch.topk(similarities, min(k, similarities.shape[0]))
    return [
        Neighbor(index.sources[row], index.targets[row], row, float(value))
        for value, row in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def top_tokens(vectors: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k cosine search of unit `queries (T, D)` among unit `vectors (N, D)` (any float dtype),
    [`SEARCH_CHUNK`] rows at a time. Returns similarities and row numbers, both `(T, min(k, N))`."""
    k = min(k, vectors.shape[0])
    best = torch.full((queries.shape[0], 0), -2.0), torch.zeros(queries.shape[0], 0, dtype=torch.long)
    for begin in range(0, vectors.shape[0], SEARCH_CHUNK):
        similarities = queries @ vectors[begin : begin + SEARCH_CHUNK].float().T  # (T, C)
        values, rows = similarities.topk(min(k, similarities.shape[1]), dim=1)
        merged = torch.cat([best[0], values], dim=1), torch.cat([best[1], rows + begin], dim=1)
        values, picks = merged[0].topk(k, dim=1)
        best = values, merged[1].gather(1, picks)
    return best


def nearest_tokens(
    model: Any, index: NeighborIndex, ids: Sequence[int], output_ids: Sequence[int], k: int = TOKEN_K
) -> list[list[TokenNeighbor]]:
    """For each of the T output tokens `output_ids` of source `ids`, the `k` training tokens whose decoder
    states are closest to the state that produced it (cosine, in the index's projected space).

    Returns:
        T lists of [`TokenNeighbor`], most similar first.
    """
    if index.tokens is None or not output_ids:
        return [[] for _ in output_ids]
    tokens = index.tokens
    queries = encode_pairs(model, [ids], [output_ids], tokens.projection).tokens  # (T, D)
    values, found = top_tokens(tokens.vectors, queries, k)  # (T, k)
    rows, positions = tokens.rows[found].tolist(), tokens.positions[found].tolist()  # (T, k) each
    return [
        [
            TokenNeighbor(index.sources[row], index.targets[row], row, position, float(value))
            for value, row, position in zip(token_values, token_rows, token_positions, strict=True)
        ]
        for token_values, token_rows, token_positions in zip(values.tolist(), rows, positions, strict=True)
    ]


def neighbors_html(neighbors: Sequence[Neighbor]) -> str:
    """An ordered list of the pairs: similarity, source, target (`li.s2sa-neighbor` each)."""
    items = "".join(
        f'<li class="s2sa-neighbor" data-row="{n.row}"><span class="s2sa-similarity">{n.similarity:.3f}</span> '
        f'<span class="s2sa-neighbor-source">{html.escape(n.source)}</span> → '
        f'<span class="s2sa-neighbor-target">{html.escape(n.target)}</span></li>'
        for n in neighbors
    )
    return f'<ol class="s2sa-neighbors">{items}</ol>'


def _marked_target(tokenizer: Any, neighbor: TokenNeighbor) -> str:
    """The neighbour's target as tokens, the matched one in `<mark>`."""
    tokens = tokenizer.convert_ids_to_tokens(target_ids(tokenizer, [neighbor.target])[0])
    return " ".join(
        f"<mark>{html.escape(token)}</mark>" if position == neighbor.position else html.escape(token)
        for position, token in enumerate(tokens)
    )


def token_neighbors_html(
    tokenizer: Any, output_tokens: Sequence[str], found: Sequence[Sequence[TokenNeighbor]]
) -> str:
    """One `<details class="s2sa-token">` per output token (click to open): the training tokens nearest in
    decoder state (`li.s2sa-token-neighbor`: similarity, source, target tokens with the match marked)."""
    blocks = []
    for position, (token, neighbors) in enumerate(zip(output_tokens, found, strict=True)):
        items = "".join(
            f'<li class="s2sa-token-neighbor" data-row="{n.row}" data-position="{n.position}">'
            f'<span class="s2sa-similarity">{n.similarity:.3f}</span> '
            f'<span class="s2sa-neighbor-source">{html.escape(n.source)}</span> → '
            f'<span class="s2sa-neighbor-target">{_marked_target(tokenizer, n)}</span></li>'
            for n in neighbors
        )
        blocks.append(
            f'<details class="s2sa-token" data-position="{position}"><summary>{position + 1}. '
            f"{html.escape(token)}</summary><ol>{items}</ol></details>"
        )
    return '<div class="s2sa-token-neighbors">' + "".join(blocks) + "</div>"


class NeighborIndexes:
    """The index of one training file for each model of the page, built (or loaded) once per model name.

    Args:
        models: the page's [`ModelCache`] (anything with `get(name) -> (model, tokenizer)`).
        path: the training file; `limit`: the pairs read (`--neighbors_max`).
    """

    def __init__(self, models: Any, path: str, limit: int = NEIGHBORS_MAX):
        self.models, self.path, self.limit = models, path, limit
        self._indexes: dict[str, NeighborIndex] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> NeighborIndex:
        with self._lock:  # two sessions asking at once build it once
            if name not in self._indexes:
                model, tokenizer = self.models.get(name)
                self._indexes[name] = load_or_build_index(name, model, tokenizer, self.path, self.limit)
            return self._indexes[name]
