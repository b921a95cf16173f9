"""hf_seq2seq_attn.training.corpus: the training split as Arrow files (cached, memory-mapped, read in batches) or a
stream, with the list reader's rows, checks and messages, and a Trainer that never decodes every row."""

import gzip
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest
from test_train import TINY, write_pairs

from hf_seq2seq_attn import corpus
from hf_seq2seq_attn.core.tokenization_seq2seq_attn import train_tokenizer
from hf_seq2seq_attn.training.corpus import (
    LENGTH_COLUMN,
    MODEL_COLUMNS,
    ArrowPairs,
    PairEncoder,
    StreamingPairs,
    TokenizedPairs,
    arrow_pairs_from_dataset,
    read_arrow_pairs,
    stream_pairs,
    tokenize,
    train_corpus_tokenizer,
)
from hf_seq2seq_attn.training.data import DataError, ParallelData, bundled_path, load_splits, read_parallel
from hf_seq2seq_attn.training.train import main as train_main

COLUMNS = ("source", "target", None, None)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Each test its own cache folder: hits and misses are then this test's alone."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    return tmp_path / "hf_cache" / "hf_seq2seq_attn"


def jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def pairs_file(tmp_path) -> str:
    path = tmp_path / "train.jsonl"
    write_pairs(path, 48)
    return str(path)


def word_tokenizer(pairs: ParallelData):
    return train_tokenizer([*pairs.sources, *pairs.targets], kind="word", vocab_size=60, min_frequency=1)


# ----- reading: same rows, same checks, cached --------------------------------------------------
def test_arrow_pairs_hold_the_rows_read_parallel_reads(pairs_file, cache):
    arrow = read_arrow_pairs(pairs_file, COLUMNS)
    listed = read_parallel(pairs_file)
    assert isinstance(arrow, ArrowPairs) and Path(arrow.arrow_file).parent == cache
    assert len(arrow) == len(listed) == 48
    assert list(arrow.sources) == listed.sources and list(arrow.targets) == listed.targets
    assert arrow.sources[:3] == listed.sources[:3] and arrow.targets[5] == listed.targets[5]
    assert arrow.sources[-2:] == listed.sources[-2:] and arrow.sources[40:2:-7] == listed.sources[40:2:-7]
    assert arrow.sources[46:99] == listed.sources[46:99] and arrow.sources[99:] == []
    with pytest.raises(IndexError):
        arrow.sources[48]
    head = arrow.head(5)
    assert len(head) == 5 and list(head.targets) == listed.targets[:5]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "a.jsonl",
            '{"source": "a", "target": "b"}\n{"source": "", "target": "x"}\n',
            r"a\.jsonl:2: empty source",
        ),
        (
            "a.jsonl",
            '{"source": "a", "target": "b"}\n{"source": "x", "target": \n',
            r"a\.jsonl:2: invalid JSON",
        ),
        ("a.jsonl", '{"src": "a", "target": "b"}\n', r"a\.jsonl:1: no column 'source' .*\['src', 'target'\]"),
        ("a.csv", "source,target\nhola,hello,extra\n", r"a\.csv:2: 3 fields but the header has 2"),
        ("a.csv", "source\ttarget\nhola\thello\n", r"tab-separated: rename the file to \.tsv"),
        ("a.jsonl", "", "no usable rows"),
        ("a.xlsx", "x", "unknown file type"),
    ],
)
def test_bad_files_give_read_parallels_messages_and_cache_nothing(tmp_path, cache, name, text, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_parallel(str(path))
    with pytest.raises(DataError, match=message):
        read_arrow_pairs(str(path), COLUMNS)
    with pytest.raises(DataError, match=message):
        len(stream_pairs(str(path), COLUMNS))  # a stream meets the row when a pass reaches it
    assert not cache.exists() or not list(cache.iterdir()), "no partial file is left for a later run to trust"


def test_missing_file_and_bad_option(tmp_path):
    for read in (read_arrow_pairs, stream_pairs):
        with pytest.raises(DataError, match="no such file"):
            read(str(tmp_path / "missing.jsonl"), COLUMNS)
    with pytest.raises(DataError, match="bad_rows must be one of"):
        read_arrow_pairs(jsonl(tmp_path / "a.jsonl", [{"source": "a", "target": "b"}]), COLUMNS, "ignore")


def test_an_unwritable_cache_is_one_error_line_with_the_fix(pairs_file, cache):
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match=r"Cannot write the training data's Arrow cache .*HF_DATASETS_CACHE"):
        read_arrow_pairs(pairs_file, COLUMNS)


def test_skipped_rows_are_counted_and_reported_on_every_run(tmp_path, caplog):
    rows = [
        {"source": "hola", "target": "hello"},
        {"source": "", "target": "x"},
        {"source": "y", "target": " "},
    ]
    path = jsonl(tmp_path / "a.jsonl", rows * 2)
    expected = {"empty source": 2, "empty target": 2}
    assert read_parallel(path, bad_rows="skip").skipped == expected
    for attempt in ("written", "reused"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hf_seq2seq_attn"):
            pairs = read_arrow_pairs(path, COLUMNS, "skip")
        assert pairs.skipped == expected and len(pairs) == 2, attempt
        assert "skipped 2 rows with empty source, 2 rows with empty target" in caplog.text, attempt
    stream = stream_pairs(path, COLUMNS, "skip")
    assert len(stream) == 2 and stream.skipped == expected


def test_gzip_nested_columns_and_the_bundled_split(tmp_path):
    rows = [{"translation": {"es": "hola", "en": "hello"}}, {"translation": {"es": "adiós", "en": "bye"}}]
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))
    columns = ("translation", "translation", "es", "en")
    pairs = read_arrow_pairs(str(tmp_path / "a.jsonl.gz"), columns)
    assert list(pairs.sources) == ["hola", "adiós"] and list(pairs.targets) == ["hello", "bye"]
    with pytest.raises(DataError, match="no language 'fr'"):
        read_arrow_pairs(str(tmp_path / "a.jsonl.gz"), ("translation", "translation", "fr", "en"))
    splits = load_splits("bundled:bible_es_en")
    assert isinstance(splits.train, ArrowPairs) and isinstance(splits.validation, ParallelData)
    assert list(splits.train.sources[:2]) == read_parallel(bundled_path("train")).sources[:2]


def test_a_datasets_split_gets_the_same_checks_with_or_without_its_own_files(tmp_path):
    rows = {"translation": [{"es": "hola", "en": "hello"}, {"es": "", "en": "x"}, {"es": "sí", "en": "yes"}]}
    in_memory = datasets.Dataset.from_dict(rows)
    in_memory.save_to_disk(str(tmp_path / "saved"))
    on_disk = datasets.load_from_disk(str(tmp_path / "saved"))
    assert on_disk.cache_files, "the read-without-a-map path needs a file-backed split"
    columns = ("translation", "translation", "es", "en")
    for split in (in_memory, on_disk):
        with pytest.raises(DataError, match=r"opus:train:2: empty source"):
            arrow_pairs_from_dataset(split, "opus:train", columns)
        pairs = arrow_pairs_from_dataset(split, "opus:train", columns, "skip")
        assert list(pairs.sources) == ["hola", "sí"] and pairs.skipped == {"empty source": 1}


def test_a_second_read_reuses_the_file_and_a_changed_file_is_read_again(pairs_file, monkeypatch):
    first = read_arrow_pairs(pairs_file, COLUMNS)

    def no_reading(*args, **kwargs):
        raise AssertionError("the source file was read again")

    with monkeypatch.context() as patch:
        patch.setattr(corpus, "_records", no_reading)
        again = read_arrow_pairs(pairs_file, COLUMNS)
    assert again == first
    write_pairs(Path(pairs_file), 30, offset=1)
    changed = read_arrow_pairs(pairs_file, COLUMNS)
    assert changed.arrow_file != first.arrow_file and len(changed) == 30
    assert (
        len(read_arrow_pairs(pairs_file, ("source", "target", None, None), "skip")) == 30
    )  # options: a new key


# ----- tokenizer and token ids ------------------------------------------------------------------
def test_tokenizer_from_batches_equals_the_one_from_lists_and_is_cached(monkeypatch):
    path = bundled_path("test")
    arrow, listed = read_arrow_pairs(path, COLUMNS), read_parallel(path)
    for kind in ("bpe", "word"):
        expected = train_tokenizer([*listed.sources, *listed.targets], kind=kind, vocab_size=600)
        got = train_corpus_tokenizer(arrow, kind, 600, 256)
        assert got.backend_tokenizer.to_str() == expected.backend_tokenizer.to_str(), kind
        with monkeypatch.context() as patch:
            patch.setattr(corpus, "train_tokenizer", lambda *a, **k: pytest.fail("trained again"))
            cached = train_corpus_tokenizer(arrow, kind, 600, 256)
        assert cached.backend_tokenizer.to_str() == got.backend_tokenizer.to_str()
        assert corpus.tokenizer_fingerprint(cached) == corpus.tokenizer_fingerprint(got)
        assert cached.model_max_length == 256


def test_pair_encoder_gives_the_ids_of_the_tokenizer_call():
    listed = read_parallel(bundled_path("test"))
    sources = [*listed.sources[:200], "</s> <pad> inside", "  spaced  out ", "ﬁ № Å"]
    targets = [*listed.targets[:200], "<s>", "x", "y"]
    for kind in ("bpe", "word", "char"):
        tokenizer = train_tokenizer(listed.sources + listed.targets, kind=kind, vocab_size=400)
        encoder = PairEncoder(tokenizer, 10**6, 10**6)
        assert encoder.backend is not None, "the fast path is what the train command uses"
        called = tokenizer(sources, text_target=targets, truncation=False)
        assert encoder.ids(sources, targets) == (called["input_ids"], called["labels"]), kind


@pytest.mark.parametrize("long_rows", ["truncate", "skip"])
def test_arrow_tokens_equal_list_tokens_and_are_reused(pairs_file, monkeypatch, caplog, long_rows):
    listed = read_parallel(pairs_file)
    tokenizer = word_tokenizer(listed)
    with caplog.at_level(logging.WARNING, logger="hf_seq2seq_attn"):
        from_lists = tokenize(listed, tokenizer, 3, 4, long_rows)
        from_arrow = tokenize(read_arrow_pairs(pairs_file, COLUMNS), tokenizer, 3, 4, long_rows)
    action = "skipped" if long_rows == "skip" else "truncated"
    assert caplog.text.count(f"16 rows longer than 3/4 tokens were {action}") == 2  # the 3-word rows
    for dataset in (from_lists, from_arrow):
        assert isinstance(dataset, TokenizedPairs)
        assert len(dataset) == (32 if long_rows == "skip" else 48)
        assert set(dataset[0]) == set(MODEL_COLUMNS), "the collator and the model get no `length`"
    assert from_arrow[:] == from_lists[:]
    assert from_arrow[LENGTH_COLUMN] == [len(ids) for ids in from_lists["input_ids"]]
    assert max(len(ids) for ids in from_arrow["input_ids"]) <= 3
    if long_rows == "truncate":
        assert all(ids[-1] == tokenizer.eos_token_id for ids in from_arrow["labels"])
    assert from_arrow.cache_files, "memory-mapped from the cache, not in memory"
    with monkeypatch.context() as patch:
        patch.setattr(PairEncoder, "__call__", lambda *a: pytest.fail("tokenized again"))
        again = tokenize(read_arrow_pairs(pairs_file, COLUMNS), tokenizer, 3, 4, long_rows)
    assert again.cache_files == from_arrow.cache_files
    assert (
        tokenize(read_arrow_pairs(pairs_file, COLUMNS).head(10), tokenizer, 3, 4, "truncate").num_rows == 10
    )


def test_cache_names_are_the_same_in_another_process(pairs_file, cache):
    """`datasets` fingerprints of closures can differ between processes; our keys must not."""
    script = textwrap.dedent(
        f"""
        import datasets
        datasets.config.HF_DATASETS_CACHE = {str(cache.parent)!r}
        from hf_seq2seq_attn.training.corpus import read_arrow_pairs, tokenize, train_corpus_tokenizer
        pairs = read_arrow_pairs({pairs_file!r}, ("source", "target", None, None))
        tokenizer = train_corpus_tokenizer(pairs, "word", 60, 16)
        print(tokenize(pairs, tokenizer, 16, 16).cache_files[0]["filename"])
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr[-2000:]
    first, second = (run.stdout.strip().splitlines()[-1] for run in runs)
    assert first == second and Path(first).parent == cache
    assert len(list(cache.glob("tokens-*.arrow"))) == 1


def test_whole_file_passes_do_not_map_the_file_into_memory(tmp_path, cache):
    """A pass through a memory map leaves the file's pages in RSS; `batches()` reads, so it does not."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads VmRSS from /proc")
    rows = 100_000
    text = " ".join(["palabra"] * 25)
    with corpus._new_arrow_file("pairs-big", corpus.PAIR_FEATURES) as writer:
        for _ in range(rows // corpus.BATCH_ROWS):
            writer.write_batch({"source": [text] * corpus.BATCH_ROWS, "target": [text] * corpus.BATCH_ROWS})
    path = cache / "pairs-big.arrow"
    size_mib = path.stat().st_size / 2**20
    assert size_mib > 30

    def rss_mib() -> float:
        line = next(
            line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS")
        )
        return int(line.split()[1]) / 1024

    before = rss_mib()
    for _ in ArrowPairs(str(path), "big", rows, "big").batches():
        pass
    ours = rss_mib() - before
    mapped = datasets.Dataset.from_file(str(path))
    before = rss_mib()
    for _ in mapped.iter(batch_size=corpus.BATCH_ROWS):
        pass
    through_the_map = rss_mib() - before
    assert through_the_map > 0.5 * size_mib, "the control: this measurement sees mapped pages"
    assert ours < 0.25 * size_mib, (ours, size_mib)


# ----- the Trainer ---------------------------------------------------------------------------------
def test_length_grouping_reads_the_length_column_as_a_list(pairs_file, tmp_path):
    """transformers' sampler indexes `train_dataset["length"]` once per row: a lazy `Column` costs ~0.1 ms
    an index (7 minutes at 4M pairs); a list costs nothing."""
    from transformers import Seq2SeqTrainingArguments
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from hf_seq2seq_attn.training.trainer import Seq2SeqAttnTrainer

    pairs = read_arrow_pairs(pairs_file, COLUMNS)
    dataset = tokenize(pairs, word_tokenizer(read_parallel(pairs_file)), 128, 128)
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path / "out"),
        train_sampling_strategy="group_by_length",
        per_device_train_batch_size=4,
        report_to="none",
    )
    trainer = Seq2SeqAttnTrainer(model=__import__("torch").nn.Linear(1, 1), args=args, train_dataset=dataset)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert type(sampler.lengths) is list
    assert sampler.lengths == [len(row["input_ids"]) for row in dataset]
    assert sorted(sampler) == list(range(48))


def run_train(tmp_path: Path, train_file: str, *extra: str) -> tuple[int, Path]:
    output = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    argv = ["--train_file", train_file, "--output_dir", str(output), "--save_strategy", "no", *TINY, *extra]
    return train_main(argv), output


def test_the_train_command_trains_on_the_memory_mapped_split(pairs_file, tmp_path, cache, monkeypatch):
    from hf_seq2seq_attn import train

    seen = []

    class Recording(train.Seq2SeqAttnTrainer):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["train_dataset"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(train, "Seq2SeqAttnTrainer", Recording)
    argv = ("--max_steps", "3", "--train_sampling_strategy", "group_by_length", "--max_train_samples", "40")
    assert run_train(tmp_path, pairs_file, *argv)[0] == 0
    (dataset,) = seen
    assert isinstance(dataset, TokenizedPairs) and len(dataset) == 40
    assert [Path(f["filename"]).parent for f in dataset.cache_files] == [cache]
    names = sorted(path.name.split("-")[0] for path in cache.iterdir() if not path.name.startswith("."))
    assert names == ["pairs", "pairs", "tokenizer", "tokens", "tokens"], "(arrow + json) x 2 and a tokenizer"
    assert run_train(tmp_path, pairs_file, *argv)[0] == 0
    assert len(list(cache.iterdir())) == 5, "the second run adds nothing: everything is reused"


def test_streaming_trains_the_steps_asked_for_and_caches_nothing(pairs_file, tmp_path, cache):
    dev = tmp_path / "dev.jsonl"
    write_pairs(dev, 8, offset=3)
    argv = ("--streaming", "True", "--max_steps", "9", "--validation_file", str(dev),
            "--eval_strategy", "steps", "--eval_steps", "9", "--max_train_samples", "40")  # fmt: skip
    code, output = run_train(tmp_path, pairs_file, *argv)
    assert code == 0
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 9 and state["log_history"][-1]["epoch"] > 1, "round the stream again"
    assert any("eval_bleu" in entry for entry in state["log_history"])
    assert not cache.exists() or not list(cache.glob("*.arrow"))
    assert "Trained on 40 sentence pairs" in (output / "README.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "--streaming needs --max_steps"),
        (
            ("--max_steps", "2", "--train_sampling_strategy", "group_by_length"),
            "--train_sampling_strategy random",
        ),
    ],
)
def test_streaming_refuses_what_a_stream_cannot_do(pairs_file, tmp_path, capsys, extra, message):
    assert run_train(tmp_path, pairs_file, "--streaming", "True", *extra)[0] == 2
    assert message in capsys.readouterr().err


def test_streaming_is_for_local_files(tmp_path, capsys):
    argv = ["--dataset_name", "bundled:bible_es_en", "--streaming", "True", "--max_steps", "1",
            "--output_dir", str(tmp_path)]  # fmt: skip
    assert train_main(argv) == 2
    assert "--streaming reads a local --train_file" in capsys.readouterr().err


def test_stream_rows_and_length(pairs_file):
    stream = stream_pairs(pairs_file, COLUMNS).head(20)
    assert isinstance(stream, StreamingPairs) and stream.num_rows is None
    assert stream.sources[:3] == read_parallel(pairs_file).sources[:3]
    assert len(stream) == 20 and stream.num_rows == 20
    rows = list(tokenize(stream, word_tokenizer(read_parallel(pairs_file)), 128, 128, seed=1))
    assert len(rows) == 20 and set(rows[0]) == set(MODEL_COLUMNS)


@pytest.mark.slow
def test_streaming_under_two_processes_splits_each_batch_group(pairs_file, tmp_path, cache):
    """Every process reads the stream and keeps its slice of each group of batches: 48 pairs, 2 processes of
    batch 4 make 6 steps an epoch (the default, where rank 0 sends out batches, fails on uneven padding)."""
    dev = tmp_path / "dev.jsonl"
    write_pairs(dev, 8, offset=3)
    output = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               str(Path(__file__).resolve().parents[1] / "scripts" / "train.py"), "--train_file", pairs_file,
               "--validation_file", str(dev), "--output_dir", str(output), "--streaming", "True",
               "--max_steps", "9", "--eval_strategy", "epoch", "--save_strategy", "no", *TINY,
               "--per_device_train_batch_size", "4"]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", HF_DATASETS_CACHE=str(cache.parent))
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((output / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert state["global_step"] == 9 and len(evaluations) == 2, "an evaluation after steps 6 and 9"
    assert json.loads((output / "results.json").read_text())["world_size"] == 2
