"""The `seq2seq-attn` command line, in-process through `main(argv)` and once as a real console script."""

import io
import json
import subprocess
import sys

import pytest
from tiny_inference_model import PAIRS, SOURCES, save_tiny_model

from hf_seq2seq_attn import cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_scripts"))


def test_translate_file_to_file(folder, tmp_path, capsys):
    source = tmp_path / "input.txt"
    sentences = [*SOURCES, "", "el gato"]  # an empty line still gets an output line
    source.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    output = tmp_path / "output.txt"
    argv = ["--model", folder, "--input", str(source), "--output", str(output), "--num_beams", "2"]
    assert cli.translate_main(argv) == 0
    lines = output.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # trailing newline
    assert len(lines[:-1]) == len(sentences)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{len(sentences)}/{len(sentences)}" in captured.err and "sent/s" in captured.err  # progress bar


def test_translate_stdin_to_stdout_with_nbest_scores(folder, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hola mundo\r\nbuenos dias\n"))
    argv = ["--model", folder, "--num_beams", "3", "--n_best", "2", "--scores", "--max_new_tokens", "4"]
    assert cli.translate_main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 * 2
    scores = [float(line.split("\t", 1)[0]) for line in lines]
    assert scores[0] >= scores[1] and scores[2] >= scores[3]
    assert "sent/s" not in captured.err and "2/2" not in captured.err  # no translation progress bar for stdin


def test_translate_scores_with_a_separate_decoder_vocabulary(tmp_path, monkeypatch, capsys):
    folder = save_tiny_model(tmp_path / "decoder_vocab", decoder_vocab_size=12)  # 26 source tokens
    for extra in (
        ["--num_beams", "1"],
        ["--num_beams", "1", "--do_sample", "--n_best", "2"],
        ["--n_best", "2"],
    ):
        monkeypatch.setattr(sys, "stdin", io.StringIO("hola mundo\nbuenos dias\n"))
        assert cli.translate_main(["--model", folder, "--scores", "--max_new_tokens", "4", *extra]) == 0, (
            extra
        )
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 * (2 if "--n_best" in extra else 1)
        assert all(float(line.split("\t", 1)[0]) < 0 for line in lines)  # mean log-probabilities


def test_translate_plain_stdin(folder, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hola mundo\nel gato negro\n\n"))
    assert cli.translate_main(["--model", folder, "--num_beams", "1"]) == 0
    assert len(capsys.readouterr().out.split("\n")) == 3 + 1


def test_translate_reports_bad_input(folder, tmp_path, capsys):
    source = tmp_path / "latin1.txt"
    source.write_bytes("hola\nadiós\n".encode("latin-1"))
    assert cli.translate_main(["--model", folder, "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 2" in err and err.count("\n") == 1

    assert cli.translate_main(["--model", str(tmp_path / "missing"), "--input", str(source)]) == 2
    assert "line 2" in capsys.readouterr().err  # input is checked before the model is loaded

    source.write_text("hola\n", encoding="utf-8")
    assert cli.translate_main(["--model", str(tmp_path / "missing"), "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No model folder") and err.count("\n") == 1
    assert cli.translate_main(["--model", folder, "--input", str(source), "--top_k", "3"]) == 2
    assert "do_sample" in capsys.readouterr().err


def test_evaluate_translation_prints_bleu_and_chrf(folder, tmp_path, capsys):
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps({"src": s, "tgt": t}) + "\n" for s, t in PAIRS), encoding="utf-8")
    predictions = tmp_path / "predictions.txt"
    argv = [
        "--model", folder, "--test_file", str(test_file), "--source_column", "src", "--target_column", "tgt",
        "--num_beams", "2", "--predictions_file", str(predictions), "--no_progress",
    ]  # fmt: skip
    assert cli.evaluate_main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"bleu", "chrf"} <= metrics.keys()
    assert metrics["num_examples"] == len(PAIRS)
    assert len(predictions.read_text(encoding="utf-8").splitlines()) == len(PAIRS)


def test_evaluate_g2p_groups_alternatives(folder, tmp_path, capsys):
    test_file = tmp_path / "test.tsv"
    rows = ["source\ttarget", "hola\tK AE1 T", "gato\tK AE1 T", "hola\tK AH0 T"]
    test_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    predictions = tmp_path / "predictions.jsonl"
    argv = ["--model", folder, "--test_file", str(test_file), "--task", "g2p", "--num_beams", "1"]
    assert cli.evaluate_main([*argv, "--predictions_file", str(predictions), "--no_progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"exact_match", "wer", "per"} <= metrics.keys()
    assert metrics["num_examples"] == 2
    records = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    assert [record["references"] for record in records] == [["K AE1 T", "K AH0 T"], ["K AE1 T"]]

    assert cli.evaluate_main([*argv, "--source_column", "word"]) == 2
    assert "no column 'word'" in capsys.readouterr().err


def test_plot_attention_writes_png(folder, tmp_path, capsys):
    output = tmp_path / "plots" / "attention.png"
    argv = ["--model", folder, "--source", "el gato negro", "--output", str(output), "--max_new_tokens", "5"]
    assert cli.plot_main(argv) == 0
    assert output.read_bytes().startswith(PNG_SIGNATURE)
    assert "1-head attention" in capsys.readouterr().out


def test_plot_attention_one_panel_per_head(tmp_path, capsys):
    folder = save_tiny_model(tmp_path / "heads", num_attention_heads=2, attention_size=8)
    output = tmp_path / "heads.png"
    argv = ["--model", folder, "--source", "hola mundo", "--output", str(output), "--max_new_tokens", "3"]
    assert cli.plot_main(argv) == 0
    assert output.read_bytes().startswith(PNG_SIGNATURE)
    assert "2-head attention" in capsys.readouterr().out


def test_unavailable_device_is_one_error_line_for_every_command(folder, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only machine, wherever this runs
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(json.dumps({"source": "hola", "target": "hello"}) + "\n", encoding="utf-8")
    commands = [
        ["translate", "--model", folder],
        ["evaluate", "--model", folder, "--test_file", str(test_file)],
        ["plot", "--model", folder, "--source", "hola", "--output", str(tmp_path / "a.png")],
        ["g2p", "--model", folder],
    ]
    for command in commands:
        for device, message in [("cuda:0", "CUDA is not available here"), ("gpu0", "Invalid device 'gpu0'")]:
            monkeypatch.setattr(sys, "stdin", io.StringIO("hola\n"))
            assert cli.main([*command, "--device", device]) == 2, command
            err = capsys.readouterr().err
            assert err.startswith("error: ") and message in err, (command, err)
            assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "a.png").exists()

    # The onnx backend runs on the CPU: a GPU it cannot use is refused, not silently ignored.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for command in commands[:2]:
        assert cli.main([*command, "--backend", "onnx", "--device", "cuda:0"]) == 2
        err = capsys.readouterr().err
        assert (
            err
            == "error: --device cuda:0: the onnx backend runs on the CPU only; drop --device or use --backend pytorch.\n"
        )


def test_console_script_lists_every_command_and_each_has_help():
    result = subprocess.run(["seq2seq-attn", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in cli.COMMANDS:
        assert f"  {name} " in result.stdout, name
    for name in ("translate", "evaluate", "plot", "recipes"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0


def test_unknown_command_is_one_error_line(capsys):
    assert cli.main(["trian"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'trian'")


def test_scripts_are_shims_of_the_command_line():
    """Issue 9: the library holds the logic; a script is a few lines calling `seq2seq-attn`."""
    from pathlib import Path

    for script in (Path(__file__).resolve().parents[1] / "scripts").glob("*.py"):
        text = script.read_text()
        assert len(text.splitlines()) <= 60, script.name
        assert "sys.path" not in text, script.name


def test_recipes_command_lists_and_prints(capsys):
    assert cli.main(["recipes"]) == 0
    listed = capsys.readouterr().out
    for name in ("demo", "bible", "g2p", "g2p-stress"):
        assert name in listed
    assert cli.main(["recipes", "--show", "demo"]) == 0
    assert "max_train_minutes: 6" in capsys.readouterr().out
    assert cli.main(["recipes", "--show", "nope"]) == 2


def test_translate_alignments_print_pharaoh_pairs(folder, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("el gato\nhola mundo\n"))
    assert cli.translate_main(["--model", folder, "--num_beams", "2", "--alignments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        text, pairs = line.split(" ||| ")
        for pair in pairs.split():
            i, j = map(int, pair.split("-"))
            assert 0 <= i < 2 and 0 <= j < max(1, len(text.split()))
    monkeypatch.setattr(sys, "stdin", io.StringIO("el gato\n"))
    assert cli.translate_main(["--model", folder, "--alignments", "soft", "--alignment_head", "0"]) == 0
    soft = json.loads(capsys.readouterr().out.split(" ||| ")[2])
    assert all(sum(row) <= 1 + 1e-6 for row in soft)
    monkeypatch.setattr(sys, "stdin", io.StringIO("el gato\n"))
    assert cli.translate_main(["--model", folder, "--alignments", "--n_best", "2"]) == 2
