"""Bad data files: each gets one line naming the file, the line or row, and the fix."""

import gzip
import json

import pytest

from hf_seq2seq_attn.training.data import DataError, bundled_path, read_parallel


def write(path, text: str | bytes):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def jsonl(rows):
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


def test_reads_jsonl_csv_tsv_and_gzip(tmp_path):
    rows = [{"source": "hola", "target": "hello"}, {"source": "adiós", "target": "bye"}]
    for path in (
        write(tmp_path / "a.jsonl", jsonl(rows)),
        write(tmp_path / "a.csv", "source,target\nhola,hello\nadiós,bye\n"),
        write(tmp_path / "a.tsv", "source\ttarget\nhola\thello\nadiós\tbye\n"),
    ):
        data = read_parallel(path)
        assert data.sources == ["hola", "adiós"] and data.targets == ["hello", "bye"]
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(jsonl(rows))
    assert len(read_parallel(str(tmp_path / "b.jsonl.gz"))) == 2
    assert len(read_parallel(bundled_path("test"))) == 1517


def test_missing_column_names_line_and_columns(tmp_path):
    path = write(tmp_path / "a.jsonl", jsonl([{"src": "hola", "target": "hello"}]))
    with pytest.raises(
        DataError, match=r"a\.jsonl:1: no column 'source' .*--source_column.*\['src', 'target'\]"
    ):
        read_parallel(path)


def test_empty_lines_are_ignored_but_empty_strings_are_reported_or_skipped(tmp_path):
    rows = jsonl([{"source": "hola", "target": "hello"}]) + "\n\n" + jsonl([{"source": "", "target": "x"}])
    path = write(tmp_path / "a.jsonl", rows)
    with pytest.raises(DataError, match=r"a\.jsonl:4: empty source\. .*--bad_rows skip"):
        read_parallel(path)
    data = read_parallel(path, bad_rows="skip")
    assert len(data) == 1 and data.skipped == {"empty source": 1}


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = write(tmp_path / "a.tsv", b"source\ttarget\nhola\thello\n" + b"caf\xe9\tcoffee\n")
    with pytest.raises(DataError, match=r"a\.tsv:3: byte 0xe9 is not UTF-8"):
        read_parallel(path)


def test_json_syntax_error_names_the_line(tmp_path):
    path = write(
        tmp_path / "a.jsonl", jsonl([{"source": "a", "target": "b"}]) + '{"source": "x", "target": \n'
    )
    with pytest.raises(DataError, match=r"a\.jsonl:2: invalid JSON"):
        read_parallel(path)


def test_csv_with_the_wrong_delimiter_suggests_the_fix(tmp_path):
    path = write(tmp_path / "a.csv", "source\ttarget\nhola\thello\n")
    with pytest.raises(DataError, match=r"tab-separated: rename the file to \.tsv"):
        read_parallel(path)


def test_ragged_csv_row(tmp_path):
    path = write(tmp_path / "a.csv", "source,target\nhola,hello,extra\n")
    with pytest.raises(DataError, match=r"a\.csv:2: 3 fields but the header has 2"):
        read_parallel(path)


def test_empty_split_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="no usable rows"):
        read_parallel(write(tmp_path / "a.jsonl", ""))
    with pytest.raises(DataError, match="no such file"):
        read_parallel(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="unknown file type"):
        read_parallel(write(tmp_path / "a.xlsx", "x"))


def test_nested_translation_column(tmp_path):
    rows = [{"translation": {"es": "hola", "en": "hello"}}]
    path = write(tmp_path / "a.jsonl", jsonl(rows))
    data = read_parallel(path, "translation", "translation", "es", "en")
    assert data.sources == ["hola"] and data.targets == ["hello"]
    with pytest.raises(DataError, match="no language 'fr'"):
        read_parallel(path, "translation", "translation", "fr", "en")


def test_hub_dataset_rows_get_the_same_checks():
    """train.py feeds `datasets` splits (Hub data) through the same record checks as local files."""
    from datasets import Dataset

    from hf_seq2seq_attn.training.data import pairs_from_records

    rows = Dataset.from_dict({"translation": [{"es": "hola", "en": "hello"}, {"es": "", "en": "x"}]})
    with pytest.raises(DataError, match=r"opus:train:2: empty source"):
        pairs_from_records(enumerate(rows, start=1), "opus:train", "translation", "translation", "es", "en")
    data = pairs_from_records(
        enumerate(rows, start=1), "opus:train", "translation", "translation", "es", "en", bad_rows="skip"
    )
    assert data.sources == ["hola"] and data.targets == ["hello"]
    with pytest.raises(DataError, match="no column 'source'"):
        pairs_from_records(enumerate(rows, start=1), "opus:train")
