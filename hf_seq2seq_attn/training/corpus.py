"""Training corpora of any size: Arrow files read in batches and memory-mapped for training, or streams.

[`read_parallel`] builds Python lists: right for validation and test splits, but for a training corpus of
millions of pairs they take gigabytes of memory, growing with the corpus. The training split goes through
Arrow files on disk instead, each written once and reused by later runs:

    file  --rows checked as read_parallel checks them-->  pairs-KEY.arrow    ArrowPairs
          --tokenizer trained on batches of it-------->  tokenizer-KEY/      train_corpus_tokenizer
          --tokenized in batches---------------------->  tokens-KEY.arrow   TokenizedPairs (memory-mapped)

A KEY hashes everything its file depends on (the source file's path, size and modification time, the column
options, the tokenizer, the length limits, the code version), so a changed input makes a new file, never a
stale hit. The files live in `<HF_DATASETS_CACHE>/hf_seq2seq_attn/` (by default
`~/.cache/huggingface/datasets/hf_seq2seq_attn/`) beside the `datasets` library's own caches: they belong to
the corpus, not to one run, so a run into another output folder reuses them, and a model folder never carries
a copy of the corpus. They take about twice the corpus's size; delete the folder to reclaim it. Each file
appears whole or not at all (written under a temporary name, then renamed), so concurrent runs, DDP ranks
and killed runs never read half a file.

Passes over a whole file (tokenizer training, tokenization) read it with plain reads, not through a memory
map: the pages of a map that a pass touched count in the process's resident memory until the kernel
reclaims them, so a pass through a map would show (and, under memory pressure, compete) like a copy of the
corpus in memory. Training reads the tokenized file through a memory map and touches only the rows it
batches; memory stays flat as the corpus grows.

`--streaming` ([`StreamingPairs`]) writes no file: the corpus is read, checked and tokenized as training
consumes it (a `datasets.IterableDataset` shuffled through a buffer), for corpora larger than the disk space
the cache would take. A stream has no length, so it needs `--max_steps` and cannot be length-grouped
([`configure_streaming`]).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import datasets
import numpy as np
import pyarrow as pa
import tokenizers
from datasets import Features, Value
from datasets import Sequence as ListOf
from datasets.arrow_writer import ArrowWriter
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from ..core.tokenization_seq2seq_attn import load_tokenizer, train_tokenizer
from .data import (
    LONG_ROW_POLICIES,
    DataError,
    ParallelData,
    _file_format,
    _records,
    check_usable,
    checked_pairs,
)

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # part of every key: bump it when what a cached file holds changes
BATCH_ROWS = 10_000  # rows per Arrow record batch and per tokenizer call
LENGTH_COLUMN = "length"  # transformers' default `length_column_name`
MODEL_COLUMNS = ["input_ids", "attention_mask", "labels"]  # what a training row gives the collator
STREAM_SHUFFLE_BUFFER = 10_000  # rows a stream shuffles among (a few MB of token ids)
PAIR_FEATURES = Features({"source": Value("string"), "target": Value("string")})
TOKEN_FEATURES = Features(
    {
        "input_ids": ListOf(Value("int32")),  # datasets.Sequence: 4.0's `List` is missing in datasets 3.x
        "attention_mask": ListOf(Value("int8")),
        "labels": ListOf(Value("int32")),
        LENGTH_COLUMN: Value("int32"),  # source tokens: what the length-grouped sampler sorts by
    }
)
TOKEN_DTYPES = {"input_ids": np.int32, "attention_mask": np.int8, "labels": np.int32}  # as in TOKEN_FEATURES
Columns = tuple[str, str, str | None, str | None]  # source_column, target_column, source_lang, target_lang


# --------------------------------------------------------------------------------------------
# The cache folder
# --------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """`<HF_DATASETS_CACHE>/hf_seq2seq_attn`, read at each call (so a test or a caller can move it)."""
    return Path(datasets.config.HF_DATASETS_CACHE) / "hf_seq2seq_attn"


def cache_key(*parts: object) -> str:
    """A short stable name for `parts` (JSON-serialisable values), the same in every process."""
    text = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cached_meta(name: str) -> dict[str, Any] | None:
    """The metadata of the cached `name.arrow`, or None if it is not (completely) there."""
    meta = cache_dir() / f"{name}.json"
    if not meta.is_file() or not (cache_dir() / f"{name}.arrow").is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):  # unreadable: rebuild rather than fail
        return None


@contextlib.contextmanager
def _new_arrow_file(name: str, features: Features) -> Iterator[ArrowWriter]:
    """Write `name.arrow` into the cache under a temporary name, renamed into place if the block succeeds."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    except OSError as error:
        raise _cache_error(error) from None
    os.close(handle)
    try:
        with ArrowWriter(features=features, path=temporary, writer_batch_size=BATCH_ROWS) as writer:
            yield writer
            writer.finalize()
        _publish(temporary, folder / f"{name}.arrow")
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(error):
            raise _cache_error(error) from None
        raise  # e.g. the source file could not be read: not the cache's fault
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _cache_error(error: OSError) -> DataError:
    reason = error.strerror or str(error)
    return DataError(
        f"Cannot write the training data's Arrow cache in {cache_dir()} ({reason}). Point "
        "HF_DATASETS_CACHE at a writable folder with room for about twice the corpus, or pass --streaming "
        "(no cache)."
    )


def _publish_meta(name: str, meta: dict[str, Any]) -> None:
    """Write `name.json` last: a cached Arrow file counts only once its metadata is there."""
    handle, temporary = tempfile.mkstemp(dir=cache_dir(), prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(meta, out)
    _publish(temporary, cache_dir() / f"{name}.json")


def _publish(temporary: str, path: Path) -> None:
    """Rename a finished temporary file or folder into place, with the permissions the umask gives new files
    (`mkstemp`/`mkdtemp` make them private), as `datasets` does for its cache files."""
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(temporary, (0o777 if os.path.isdir(temporary) else 0o666) & ~umask)
    os.replace(temporary, path)


def arrow_file_batches(
    paths: Sequence[str], columns: Sequence[str], limit: int | None = None
) -> Iterator[pa.RecordBatch]:
    """The record batches of Arrow stream files (the `datasets` cache format), at most `limit` rows in all.

    Read with plain reads, not a memory map, so a pass over a large file leaves nothing resident.
    """
    left = limit
    for path in paths:
        with pa.OSFile(path) as handle:
            for batch in pa.ipc.open_stream(handle):
                if left is not None:
                    if left <= 0:
                        return
                    batch = batch.slice(0, left)
                    left -= batch.num_rows
                yield batch.select(list(columns))


# --------------------------------------------------------------------------------------------
# Training pairs: an Arrow file, or a stream
# --------------------------------------------------------------------------------------------
class ColumnView(Sequence[str]):
    """One side (`source` or `target`) of a corpus as a read-only sequence that reads only what is asked for.

    `len()` is the corpus's; indexing and slicing read from the start up to the last item wanted, so the head
    of a corpus (e.g. `train.sources[:3]`) is cheap and nothing is ever held in full.
    """

    def __init__(self, pairs: ArrowPairs | StreamingPairs, side: int):
        self.pairs = pairs
        self.side = side  # 0 = source, 1 = target

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[str]:
        for batch in self.pairs.batches():
            yield from batch[self.side]

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if (
            isinstance(index, slice)
            and (index.start or 0) >= 0
            and (index.stop or 0) >= 0
            and index.step is None
        ):
            # The common head slice: no need to know the length (a stream's costs a pass).
            return list(itertools.islice(self, index.start, index.stop))
        rows = range(len(self))[index]  # raises IndexError as a list would
        if isinstance(rows, int):
            return next(itertools.islice(self, rows, None))
        if not rows:
            return []
        first = min(rows)
        items = list(itertools.islice(self, first, max(rows) + 1))
        return [items[row - first] for row in rows]


@dataclass
class ArrowPairs:
    """Training pairs in an Arrow file of the cache (`source`, `target`), checked as `read_parallel` checks.

    Used like [`ParallelData`] (`len`, `sources[:n]`, `skipped`, `head`) but never held as lists: `batches()`
    reads the file a record batch at a time.
    """

    arrow_file: str
    path: str  # what the user named: the file, or the Hub split
    num_rows: int  # rows used: all of the file's, or its first rows after `head`
    key: str  # names the file's contents; what is derived from it is keyed on it
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.num_rows

    @property
    def content_key(self) -> str:
        """Names exactly the pairs used (the file and how many of its rows)."""
        return f"{self.key}/{self.num_rows}"

    @property
    def sources(self) -> ColumnView:
        return ColumnView(self, 0)

    @property
    def targets(self) -> ColumnView:
        return ColumnView(self, 1)

    def batches(self) -> Iterator[tuple[list[str], list[str]]]:
        """`(sources, targets)` lists of up to `BATCH_ROWS` pairs each, in file order."""
        for batch in arrow_file_batches([self.arrow_file], ("source", "target"), self.num_rows):
            yield batch.column(0).to_pylist(), batch.column(1).to_pylist()

    def head(self, n: int) -> ArrowPairs:
        """The first `n` pairs (the same file, fewer rows)."""
        return replace(self, num_rows=min(n, self.num_rows))


def read_arrow_pairs(path: str, columns: Columns, bad_rows: str = "error") -> ArrowPairs:
    """The pairs of a local JSON Lines / CSV / TSV file (see [`read_parallel`]) as a cached Arrow file.

    The first run reads the file row by row (constant memory) with `read_parallel`'s checks and messages;
    later runs find the Arrow file by the source file's path, size and modification time, and the options.

    Raises:
        DataError: naming the file, the line and the fix.
    """
    kind = _file_format(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file.") from None
    key = cache_key("pairs", os.path.abspath(path), stat.st_size, stat.st_mtime_ns, columns, bad_rows)
    return _arrow_pairs(key, path, lambda: _records(path, kind), columns, bad_rows, kind)


def arrow_pairs_from_dataset(
    dataset: datasets.Dataset, name: str, columns: Columns, bad_rows: str = "error"
) -> ArrowPairs:
    """The pairs of a `datasets` split (e.g. a Hub dataset's train split) as a cached Arrow file.

    Its records get `read_parallel`'s checks, numbered from 1 (`name:NUMBER` in messages); the key is the
    split's `datasets` fingerprint.
    """
    key = cache_key("pairs", name, dataset._fingerprint, columns, bad_rows)
    return _arrow_pairs(key, name, lambda: _dataset_records(dataset), columns, bad_rows, "json")


def _dataset_records(dataset: datasets.Dataset) -> Iterator[tuple[int, dict]]:
    """`(number, row)` of a `datasets.Dataset`; its cache files, if it has them, are read with plain reads."""
    files = [entry["filename"] for entry in dataset.cache_files]
    batches: Iterable[Any]
    if files and dataset._indices is None:
        batches = (
            batch.to_pylist() for batch in arrow_file_batches(files, dataset.column_names, len(dataset))
        )
    else:  # in memory, or a selection of rows: go through `datasets`
        batches = (
            [dict(zip(batch, row, strict=True)) for row in zip(*batch.values(), strict=True)]
            for batch in dataset.iter(batch_size=BATCH_ROWS)
        )
    return enumerate(itertools.chain.from_iterable(batches), start=1)


def _arrow_pairs(
    key: str,
    path: str,
    records: Callable[[], Iterable[tuple[int, dict]]],
    columns: Columns,
    bad_rows: str,
    kind: str,
) -> ArrowPairs:
    """The cached Arrow file `pairs-KEY`, written from `records()` (numbered records) if it is not there."""
    name = f"pairs-{key}"
    meta = _cached_meta(name)
    if meta is None:
        skipped: dict[str, int] = {}
        rows = 0
        with _new_arrow_file(name, PAIR_FEATURES) as writer:
            pairs = checked_pairs(records(), path, columns, bad_rows, kind, skipped)
            for chunk in _chunks(pairs, BATCH_ROWS):
                sources, targets = zip(*chunk, strict=True)
                writer.write_batch({"source": list(sources), "target": list(targets)})
                rows += len(chunk)
            if not rows:  # an empty split: fail before anything is cached
                check_usable(rows, path, skipped)
        meta = {"rows": rows, "skipped": skipped, "path": path}
        _publish_meta(name, meta)
        logger.info("%s: %d pairs written to %s", path, meta["rows"], cache_dir() / f"{name}.arrow")
    else:
        logger.info("%s: reusing %s (%d pairs)", path, cache_dir() / f"{name}.arrow", meta["rows"])
    check_usable(meta["rows"], path, meta["skipped"])  # logs what was skipped, on every run alike
    return ArrowPairs(str(cache_dir() / f"{name}.arrow"), path, meta["rows"], key, meta["skipped"])


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@dataclass
class StreamingPairs:
    """A training corpus read, checked and tokenized as training consumes it: never converted or held.

    Each pass re-reads the file (`read_parallel`'s checks, numbered lines in messages). `len()` is known
    after one complete pass (the tokenizer's training makes one); before that, it costs a counting pass.
    """

    path: str
    columns: Columns
    bad_rows: str = "error"
    limit: int | None = None  # only the first rows (`--max_train_samples`)
    num_rows: int | None = None  # known once a pass has been completed
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        if self.num_rows is None:
            for _ in self.pairs():  # counts, and checks every row
                pass
        assert self.num_rows is not None, "a complete pass sets num_rows"
        return self.num_rows

    @property
    def sources(self) -> ColumnView:
        return ColumnView(self, 0)

    @property
    def targets(self) -> ColumnView:
        return ColumnView(self, 1)

    def pairs(self) -> Iterator[tuple[str, str]]:
        """One pass over the checked pairs; completing it records `num_rows` and `skipped`."""
        skipped: dict[str, int] = {}
        count = 0
        for pair in _stream_checked(self.path, self.columns, self.bad_rows, self.limit, skipped):
            count += 1
            yield pair
        self.num_rows, self.skipped = count, skipped
        check_usable(count, self.path, skipped)

    def batches(self) -> Iterator[tuple[list[str], list[str]]]:
        """`(sources, targets)` lists of up to `BATCH_ROWS` pairs each, in file order."""
        for chunk in _chunks(self.pairs(), BATCH_ROWS):
            sources, targets = zip(*chunk, strict=True)
            yield list(sources), list(targets)

    def head(self, n: int) -> StreamingPairs:
        """The first `n` pairs."""
        limit = n if self.limit is None else min(n, self.limit)
        return replace(self, limit=limit, num_rows=None if self.num_rows is None else min(n, self.num_rows))

    def dataset(self) -> datasets.IterableDataset:
        """The pairs as a `datasets.IterableDataset` of `source`, `target` rows (one pass per epoch)."""
        kwargs = {"path": self.path, "columns": self.columns, "bad_rows": self.bad_rows, "limit": self.limit}
        return datasets.IterableDataset.from_generator(
            _stream_rows, features=PAIR_FEATURES, gen_kwargs=kwargs
        )


def stream_pairs(path: str, columns: Columns, bad_rows: str = "error") -> StreamingPairs:
    """A local file as a [`StreamingPairs`], checked now (not mid-training) to exist, of a known type."""
    _file_format(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file.")
    return StreamingPairs(path, columns, bad_rows)


def _stream_checked(
    path: str, columns: Columns, bad_rows: str, limit: int | None, skipped: dict[str, int]
) -> Iterator[tuple[str, str]]:
    kind = _file_format(path)
    return itertools.islice(
        checked_pairs(_records(path, kind), path, columns, bad_rows, kind, skipped), limit
    )


def _stream_rows(path: str, columns: Columns, bad_rows: str, limit: int | None) -> Iterator[dict[str, str]]:
    """The generator behind [`StreamingPairs.dataset`] (module level: `datasets` pickles and hashes it)."""
    count = 0
    for source, target in _stream_checked(path, columns, bad_rows, limit, {}):
        count += 1
        yield {"source": source, "target": target}
    check_usable(count, path, {})


def configure_streaming(args: Any) -> None:
    """Refuse the `Seq2SeqTrainingArguments` a stream cannot honour, with the fix; under several processes,
    have each read the stream itself.

    Accelerate's default for a stream (`dispatch_batches`) has the main process read every batch and send
    each process one, which fails on batches padded to different lengths. Without it, accelerate has every
    process read (and tokenize) the stream and keep its own slice of each group of batches, looping to the
    start to even out the last group, so all processes take the same steps.

    Raises:
        DataError: no `--max_steps` (a stream has no length, so epochs cannot be counted, nor can a time
            budget's step bound), or a sampling strategy that needs every row's length up front.
    """
    if args.max_steps is None or args.max_steps <= 0:
        raise DataError(
            "--streaming needs --max_steps: a stream has no length, so the Trainer cannot count epochs "
            "(it goes round the stream as often as --max_steps needs; with --max_train_minutes, give "
            "--max_steps as an upper bound)."
        )
    strategy = str(getattr(args, "train_sampling_strategy", "random"))
    if strategy in ("group_by_length", "batch_rebalance"):
        raise DataError(
            "--streaming reads rows in order through a shuffle buffer, but --train_sampling_strategy "
            f"{strategy} needs every row's length up front. Pass --train_sampling_strategy random, or drop "
            "--streaming (the Arrow cache groups by length with flat memory)."
        )
    if args.world_size > 1:
        args.accelerator_config.dispatch_batches = False


def corpus_texts(pairs: ParallelData | ArrowPairs | StreamingPairs) -> Iterator[str]:
    """Every source and target text, a batch of sources then its targets, in one pass (tokenizer training)."""
    if isinstance(pairs, ParallelData):
        yield from pairs.sources
        yield from pairs.targets
        return
    for sources, targets in pairs.batches():
        yield from sources
        yield from targets


# --------------------------------------------------------------------------------------------
# Tokenizer and token ids
# --------------------------------------------------------------------------------------------
def _tokenizer_code_version() -> str:
    """Hash of the module that trains tokenizers: a cached tokenizer is stale once that code changes."""
    from ..core import tokenization_seq2seq_attn

    return hashlib.sha256(Path(tokenization_seq2seq_attn.__file__).read_bytes()).hexdigest()[:16]


def train_corpus_tokenizer(
    pairs: ParallelData | ArrowPairs | StreamingPairs, kind: str, vocab_size: int, model_max_length: int
) -> PreTrainedTokenizerFast:
    """[`train_tokenizer`] on both sides of the corpus, fed a batch at a time.

    For an Arrow corpus the result is cached (`tokenizer-KEY/`): training one on millions of pairs takes
    minutes, and the same corpus and options give the same tokenizer.
    """

    def train() -> PreTrainedTokenizerFast:
        texts = corpus_texts(pairs)
        return train_tokenizer(texts, kind=kind, vocab_size=vocab_size, model_max_length=model_max_length)

    if not isinstance(pairs, ArrowPairs):
        return train()
    options = {"kind": kind, "vocab_size": vocab_size, "model_max_length": model_max_length}
    name = "tokenizer-" + cache_key(
        pairs.content_key, options, tokenizers.__version__, _tokenizer_code_version()
    )
    folder = cache_dir() / name
    if (folder / "tokenizer.json").is_file():
        logger.info("%s: reusing the tokenizer trained on it before (%s)", pairs.path, folder)
        return load_tokenizer(str(folder))
    tokenizer = train()
    cache_dir().mkdir(parents=True, exist_ok=True)
    temporary = tempfile.mkdtemp(dir=cache_dir(), prefix=f".{name}.")
    tokenizer.save_pretrained(temporary)
    try:
        _publish(temporary, folder)  # a folder appears whole or not at all
    except OSError:  # another process (a DDP rank, a concurrent run) published it first
        shutil.rmtree(temporary, ignore_errors=True)
    return tokenizer


def tokenizer_fingerprint(tokenizer) -> str:
    """Names what a tokenizer does to text: its `tokenizers` state, class and `</s>` id (not its origin).

    Raises:
        TypeError: a tokenizer not backed by the `tokenizers` library (its cached ids could not be named).
    """
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise TypeError(
            f"Tokenizing an Arrow corpus needs a `tokenizers`-backed PreTrainedTokenizerFast, not a "
            f"{type(tokenizer).__name__}; train one with `train_tokenizer(...)`."
        )
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    for setting in ("truncation", "padding"):  # call-time settings that each call sets again
        state.pop(setting, None)
    return cache_key(type(tokenizer).__name__, state, tokenizer.eos_token_id)


class PairEncoder:
    """Token ids of aligned pairs, each side cut to its limit (keeping `</s>` last, so the model still learns
    to stop) or, with `long_rows="skip"`, the pair dropped: one object for lists, Arrow batches and streams.

    The ids are those of `tokenizer(sources, text_target=targets)`. For the class that `train_tokenizer` and
    `load_tokenizer` give (exactly `PreTrainedTokenizerFast`, whose target side is the same tokenizer) the
    `tokenizers` backend is called directly: about twice as fast, since `__call__` also builds offsets, masks
    and a `BatchEncoding` that would be thrown away.
    """

    def __init__(
        self, tokenizer, max_source_length: int, max_target_length: int, long_rows: str = "truncate"
    ):
        if long_rows not in LONG_ROW_POLICIES:
            raise DataError(f"long_rows must be one of {LONG_ROW_POLICIES}; got {long_rows!r}.")
        self.tokenizer = tokenizer
        self.limits = (max_source_length, max_target_length)
        self.long_rows = long_rows
        self.eos = tokenizer.eos_token_id
        self.backend: Tokenizer | None = None
        if type(tokenizer) is PreTrainedTokenizerFast:
            # A private copy, set up as `__call__(truncation=False)` sets the shared one before encoding.
            self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            self.backend.no_truncation()
            self.backend.no_padding()
            self.backend.encode_special_tokens = tokenizer.split_special_tokens

    def ids(self, sources: list[str], targets: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Uncut token ids of each side, `</s>` appended."""
        if self.backend is None:
            encoded = self.tokenizer(sources, text_target=targets, truncation=False)
            return encoded["input_ids"], encoded["labels"]
        encode = getattr(
            self.backend, "encode_batch_fast", self.backend.encode_batch
        )  # fast: tokenizers>=0.20
        return [e.ids for e in encode(sources)], [e.ids for e in encode(targets)]

    def __call__(self, sources: list[str], targets: list[str]) -> tuple[dict[str, list], int]:
        """The columns of `TOKEN_FEATURES` for the pairs kept, and how many pairs were longer than a limit."""
        max_source, max_target = self.limits
        columns: dict[str, list] = {name: [] for name in TOKEN_FEATURES}
        too_long = 0
        for source, target in zip(*self.ids(sources, targets), strict=True):
            if len(source) > max_source or len(target) > max_target:
                too_long += 1
                if self.long_rows == "skip":
                    continue
                source, target = _cut(source, max_source, self.eos), _cut(target, max_target, self.eos)
            columns["input_ids"].append(source)
            columns["attention_mask"].append([1] * len(source))
            columns["labels"].append(target)
            columns[LENGTH_COLUMN].append(len(source))
        return columns, too_long

    def log(self, path: str, too_long: int) -> None:
        """Say how many pairs were cut or dropped (a warning: the limits may be too tight)."""
        if too_long:
            action = "skipped" if self.long_rows == "skip" else "truncated"
            logger.warning(
                "%s: %d rows longer than %d/%d tokens were %s.", path, too_long, *self.limits, action
            )


def _cut(ids: list[int], limit: int, eos: int) -> list[int]:
    return ids if len(ids) <= limit else [*ids[: limit - 1], eos]


class TokenizedPairs(datasets.Dataset):
    """Token ids to train on: rows give the model's inputs (`MODEL_COLUMNS`), and `dataset["length"]` gives
    every row's source length as a list of ints.

    That list is what Trainer's length-grouped sampler reads (`train_dataset[args.length_column_name]`), once
    instead of decoding every row. It is built here from the Arrow column in one call because `datasets` 4+
    answers a column name with a lazy `Column` whose items cost ~0.1 ms each to index, and the sampler indexes
    every row: 7 minutes for 4M pairs.
    """

    @classmethod
    def of(cls, dataset: datasets.Dataset) -> TokenizedPairs:
        """The same rows (and memory map, if any), with rows formatted to `MODEL_COLUMNS`."""
        tokenized = cls(
            dataset.data,
            info=dataset.info,
            split=dataset.split,
            indices_table=dataset._indices,
            fingerprint=dataset._fingerprint,
        )
        tokenized.set_format(type=None, columns=MODEL_COLUMNS)  # the collator and the model see no `length`
        return tokenized

    def __getitem__(self, key):  # type: ignore[override]  # datasets' overloads; one more case here
        if isinstance(key, str) and key == LENGTH_COLUMN:
            return self._getitem(key, format_type="arrow", format_columns=None).to_pylist()
        return super().__getitem__(key)


def tokenize(
    pairs: ParallelData | ArrowPairs | StreamingPairs,
    tokenizer,
    max_source_length: int,
    max_target_length: int,
    long_rows: str = "truncate",
    *,
    seed: int = 0,
) -> TokenizedPairs | datasets.IterableDataset:
    """The rows a `Seq2SeqTrainer` trains or evaluates on (see [`data.tokenize_pairs`])."""
    encoder = PairEncoder(tokenizer, max_source_length, max_target_length, long_rows)
    if isinstance(pairs, StreamingPairs):
        return _tokenize_stream(pairs, encoder, seed)
    if isinstance(pairs, ArrowPairs):
        return _tokenize_arrow(pairs, encoder)
    columns, too_long = encoder(list(pairs.sources), list(pairs.targets))
    encoder.log(pairs.path, too_long)
    return TokenizedPairs.of(datasets.Dataset.from_dict(columns, features=TOKEN_FEATURES))


def _tokenize_arrow(pairs: ArrowPairs, encoder: PairEncoder) -> TokenizedPairs:
    """Tokenize an Arrow corpus a batch at a time into the cached `tokens-KEY.arrow`, then map it."""
    parts = (pairs.content_key, tokenizer_fingerprint(encoder.tokenizer), encoder.limits, encoder.long_rows)
    name = "tokens-" + cache_key(*parts)
    meta = _cached_meta(name)
    if meta is None:
        rows = too_long = 0
        with _new_arrow_file(name, TOKEN_FEATURES) as writer:
            for sources, targets in pairs.batches():
                columns, long = encoder(sources, targets)
                writer.write_table(_token_table(columns))
                rows, too_long = rows + len(columns[LENGTH_COLUMN]), too_long + long
        meta = {"rows": rows, "too_long": too_long}
        _publish_meta(name, meta)
        logger.info("%s: %d tokenized pairs written to %s", pairs.path, rows, cache_dir() / f"{name}.arrow")
    else:
        logger.info("%s: reusing the tokenized pairs in %s", pairs.path, cache_dir() / f"{name}.arrow")
    encoder.log(pairs.path, meta["too_long"])
    return TokenizedPairs.of(datasets.Dataset.from_file(str(cache_dir() / f"{name}.arrow")))


def _token_table(columns: dict[str, list]) -> pa.Table:
    """The columns of `TOKEN_FEATURES` as an Arrow table, the id lists flattened through numpy: 2-3x faster
    than `ArrowWriter.write_batch`'s conversion of Python lists, which was a tenth of the tokenizing time."""
    arrays = {name: _list_array(columns[name], dtype) for name, dtype in TOKEN_DTYPES.items()}
    return pa.table({**arrays, LENGTH_COLUMN: pa.array(columns[LENGTH_COLUMN], pa.int32())})


def _list_array(rows: list[list[int]], dtype: type[np.integer]) -> pa.ListArray:
    lengths = np.fromiter(map(len, rows), dtype=np.int32, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _tokenize_stream(pairs: StreamingPairs, encoder: PairEncoder, seed: int) -> datasets.IterableDataset:
    """Tokenize a stream as it is read, then shuffle it through a buffer (`set_epoch` reseeds each epoch)."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        columns, _ = encoder(batch["source"], batch["target"])
        del columns[LENGTH_COLUMN]  # nothing groups a stream by length
        return columns

    stream = pairs.dataset().map(encode, batched=True, batch_size=1_000, remove_columns=["source", "target"])
    return stream.shuffle(seed=seed, buffer_size=STREAM_SHUFFLE_BUFFER)


__all__ = [
    "ArrowPairs",
    "StreamingPairs",
    "TokenizedPairs",
    "PairEncoder",
    "arrow_pairs_from_dataset",
    "cache_dir",
    "configure_streaming",
    "corpus_texts",
    "read_arrow_pairs",
    "stream_pairs",
    "tokenize",
    "train_corpus_tokenizer",
]
