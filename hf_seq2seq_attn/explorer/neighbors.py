"""Nearest training sentences: the training pairs whose encoder states are closest to the typed sentence's.

`seq2seq-attn explore --model M --neighbors FILE` reads up to `--neighbors_max` pairs of a training file
(JSON Lines / CSV / TSV with `source` / `target` columns, read by the training reader
[`hf_seq2seq_attn.training.corpus.stream_pairs`] with the same row checks), encodes their sources once
([`build_index`], batches of [`BATCH_SIZE`] sorted by length, a tqdm bar) and caches the vectors
([`load_or_build_index`]). For a typed sentence, [`nearest`] returns the k pairs closest to it.

The vector of a sentence is the **mean of its encoder states over the real (non-pad) positions**,
unit-normalised, compared by cosine similarity. Not the encoder's final summary state: that state is the
last forward and first backward RNN step, which weigh the ends of a sentence most, while the decoder reads
every position through attention; the mean does too, and exists for every `bridge` setting.

The search is exact brute force: one `(M, K) @ (K,)` matmul over unit vectors and a top-k. Measured on the
bundled Bible data (all 28,008 training pairs, a default-size model, K = 512, 57 MB of vectors) on 2 CPU
threads of a loaded machine: 1.3 ms per query (4.8 ms with encoding the typed sentence), against 60 s to
encode the pairs once and 0.1 s to load them from the cache. An approximate-neighbour library (faiss,
annoy, scikit-learn) would add a dependency and a second index format to save about a millisecond a
query; it earns its place at millions of rows, not at `--neighbors_max` 30,000.

The cache holds `<key>.safetensors` (the `(M, K)` vectors; never pickle) and `<key>.json` (the pairs, the
file and N), where the key hashes the file's bytes, N, the encoder's weights, the tokenizer and the maximum
source length: any change builds again. It lives in `<model folder>/explorer_neighbors/`, or under the
user cache (`$XDG_CACHE_HOME` or `~/.cache`, `hf_seq2seq_attn/explorer_neighbors/`) when the model is a
Hub id or its folder is not writable.
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
BATCH_SIZE = 256  # sentences per encoder call
CACHE_FOLDER = "explorer_neighbors"
CACHE_VERSION = 1  # bump when the vectors change meaning (pooling, normalisation)


@dataclass
class Neighbor:
    """One training pair near the typed sentence: its texts, its row in the file's pairs, and similarity."""

    source: str
    target: str
    row: int
    similarity: float


@dataclass
class NeighborIndex:
    """The encoded training pairs of one model.

    Attributes:
        vectors (`torch.Tensor`): `(M, K)` float32, unit length (mean-pooled encoder states).
        sources, targets (`list[str]`): the M pairs, in file order.
        path (`str`): the training file.
        cache_file (`str`, *optional*): the `.safetensors` file the vectors were loaded from or saved to.
    """

    vectors: torch.Tensor
    sources: list[str]
    targets: list[str]
    path: str
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


def source_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, cut to [`max_source_tokens`] with `</s>` kept last, as the explorer reads
    a typed sentence ([`hf_seq2seq_attn.explorer.decode.encode_source`]); one batched tokenizer call."""
    limit = max_source_tokens(tokenizer)
    eos = tokenizer.eos_token_id
    cut = []
    for ids in tokenizer(list(texts))["input_ids"]:
        if len(ids) > limit:
            tail = [eos] if eos is not None and ids[-1] == eos else []
            ids = ids[: limit - len(tail)] + tail
        cut.append(ids)
    return cut


@torch.no_grad()
def sentence_vectors(
    model: Any, ids: Sequence[Sequence[int]], batch_size: int = BATCH_SIZE, progress: bool = False
) -> torch.Tensor:
    """Unit-length mean-pooled encoder states of each source.

    Sources are encoded in batches of `batch_size` sorted by length (little padding), under `no_grad`.

    Args:
        ids: M lists of token ids (each non-empty).
        progress: show a tqdm bar counting sentences.
    Returns:
        `(M, K)` float32 on the CPU, rows in the order of `ids`.
    """
    from tqdm.auto import tqdm

    encoder, pad = model.get_encoder(), model.config.resolved_pad_token_id
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    vectors: torch.Tensor | None = None
    with tqdm(
        total=len(ids), unit="sentence", desc="Encoding training sentences", disable=not progress
    ) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch, mask = padded_batch(ids, rows, pad)  # (B, S), (B, S)
            states = encoder(input_ids=batch.to(model.device), attention_mask=mask.to(model.device))
            pooled = mean_pooled(states.last_hidden_state, mask.to(model.device)).float().cpu()  # (B, K)
            if vectors is None:
                vectors = torch.empty(len(ids), pooled.shape[1])  # (M, K)
            vectors[rows] = pooled
            bar.update(len(rows))
    assert vectors is not None, "at least one sentence"
    return vectors


def padded_batch(
    ids: Sequence[Sequence[int]], rows: Sequence[int], pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sources `ids[row]` of `rows`, right-padded with `pad`: ids `(B, S)` and bool mask `(B, S)`."""
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


def build_index(model: Any, tokenizer: Any, path: str, limit: int = NEIGHBORS_MAX) -> NeighborIndex:
    """Read up to `limit` pairs of `path` and encode their sources (a progress bar on stderr)."""
    sources, targets = read_pairs(path, limit)
    vectors = sentence_vectors(model, source_ids(tokenizer, sources), progress=True)
    return NeighborIndex(vectors, sources, targets, path)


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
    """The cache name of an index: a hash of the file's bytes, `limit`, the encoder's weights (the only
    ones the vectors depend on), the tokenizer and its maximum source length."""
    digest = hashlib.sha256()
    for part in (
        CACHE_VERSION,
        _file_digest(path),
        limit,
        _tokenizer_digest(tokenizer),
        max_source_tokens(tokenizer),
    ):
        digest.update(f"{part}\0".encode())
    for name, tensor in sorted(model.get_encoder().state_dict().items()):
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


def _load_cached(folder: Path, key: str, path: str) -> NeighborIndex | None:
    """The index cached as `folder/<key>.safetensors` + `.json`, or None when absent or unreadable."""
    from safetensors.torch import load_file

    vectors_file, pairs_file = folder / f"{key}.safetensors", folder / f"{key}.json"
    if not (vectors_file.is_file() and pairs_file.is_file()):
        return None
    try:
        pairs = json.loads(pairs_file.read_text(encoding="utf-8"))
        vectors = load_file(str(vectors_file))["vectors"]  # (M, K)
    except (OSError, ValueError, KeyError) as err:
        logger.warning("ignoring the unreadable neighbour cache %s: %s", vectors_file, err)
        return None
    if vectors.shape[0] != len(pairs["sources"]):
        return None
    return NeighborIndex(vectors, pairs["sources"], pairs["targets"], path, str(vectors_file))


def _save(folder: Path, key: str, index: NeighborIndex, limit: int) -> str:
    """Write the index into `folder` (each file whole or not at all); returns the `.safetensors` path."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    pairs = {
        "file": os.path.abspath(index.path),
        "limit": limit,
        "sources": index.sources,
        "targets": index.targets,
    }
    with tempfile.NamedTemporaryFile(
        "w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        json.dump(pairs, handle, ensure_ascii=False)
    os.replace(handle.name, folder / f"{key}.json")
    temporary = str(folder / f"{key}.safetensors.{os.getpid()}.tmp")
    save_file({"vectors": index.vectors.contiguous()}, temporary)
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


@torch.no_grad()
def nearest(
    model: Any, tokenizer: Any, index: NeighborIndex, text: str, k: int = NEIGHBORS_K
) -> list[Neighbor]:
    """The `k` training pairs whose vectors are closest (cosine) to `text`'s, most similar first."""
    ids = source_ids(tokenizer, [text])
    query = sentence_vectors(model, ids)[0]  # (K,)
    similarities = index.vectors @ query  # (M,): unit vectors, so cosine
    top = torch.topk(similarities, min(k, similarities.shape[0]))
    return [
        Neighbor(index.sources[row], index.targets[row], row, float(value))
        for value, row in zip(top.values.tolist(), top.indices.tolist(), strict=True)
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
