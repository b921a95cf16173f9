"""Checkpoint averaging: exact means, refusals naming the difference, a loadable folder, the training hook."""

import json
import os
import random
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from tiny_inference_model import SOURCES, build_tiny_model
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, Seq2SeqTrainingArguments

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.cli import average_main as main
from hf_seq2seq_attn.core.pipeline_seq2seq_attn import add_pipeline_to_folder
from hf_seq2seq_attn.core.tokenization_seq2seq_attn import train_tokenizer
from hf_seq2seq_attn.tools.averaging import (
    average_and_keep_best,
    average_checkpoints,
    average_state_dicts,
    last_checkpoints,
)
from hf_seq2seq_attn.training.trainer import Seq2SeqAttnTrainer

PICKLES = (".bin", ".pt", ".pth", ".pkl")


def save_checkpoint(folder, seed: int, card: bool = False, **overrides) -> str:
    """A saved tiny model (weights from `seed`), its tokenizer and generation config, like a checkpoint."""
    model, tokenizer = build_tiny_model(seed=seed, **overrides)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if card:
        with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
            handle.write("# tiny\n\ntest BLEU 1.0\n")
    return str(folder)


def float64_mean(folders: list[str]) -> dict[str, torch.Tensor]:
    """Reference: stack the checkpoints' tensors in float64 and take `mean`."""
    tensors = [load_file(os.path.join(f, "model.safetensors")) for f in folders]
    return {key: torch.stack([t[key].double() for t in tensors]).mean(dim=0) for key in tensors[0]}


def test_averaged_tensors_are_the_element_wise_mean_and_the_folder_is_a_normal_model(tmp_path):
    # tied everything: shared encoder/decoder embeddings and output layer, stored once in the file
    tied = {"share_encoder_decoder_embeddings": True, "tie_word_embeddings": True}
    folders = [save_checkpoint(tmp_path / f"checkpoint-{step}", seed=step, **tied) for step in (10, 20, 30)]
    add_pipeline_to_folder(folders[-1])
    with open(os.path.join(folders[-1], "training_args.bin"), "wb") as handle:  # what Trainer leaves
        handle.write(b"pickle")
    output = average_checkpoints(folders, str(tmp_path / "averaged"), card_source=None)

    averaged = load_file(os.path.join(output, "model.safetensors"))
    reference = float64_mean(folders)
    assert set(averaged) == set(reference)
    for key, tensor in averaged.items():
        assert tensor.dtype == torch.float32
        # Exact: the float64 sum of three float32 values is exact (their exponents are close), so both
        # sides hold the same float64 mean and round it to the same float32.
        assert torch.equal(tensor, reference[key].float()), key  # weights: bit for bit
    embedding = next(key for key in averaged if key.endswith("embed_tokens.weight"))
    for folder in folders:  # a real mean, not a copy of one input
        assert not torch.equal(
            averaged[embedding], load_file(os.path.join(folder, "model.safetensors"))[embedding]
        )

    files = sorted(os.listdir(output))
    assert not [name for name in files if name.endswith(PICKLES)], files
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "modeling_seq2seq_attn.py",
        "configuration_seq2seq_attn.py",
        "pipeline_seq2seq_attn.py",
    ):
        assert name in files, files
    config = json.loads(Path(output, "config.json").read_text())
    assert "AutoModelForSeq2SeqLM" in config["auto_map"] and "translation" in config["custom_pipelines"]

    model = AutoModelForSeq2SeqLM.from_pretrained(output, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert model.lm_head.weight.data_ptr() == model.model.encoder.embed_tokens.weight.data_ptr()  # still tied
    expected_embedding = next(v for k, v in reference.items() if k.endswith("embed_tokens.weight"))
    assert torch.equal(model.lm_head.weight, expected_embedding.float())  # weights: bit for bit
    batch = tokenizer(SOURCES, return_tensors="pt", padding=True)
    generated = model.generate(**batch, max_new_tokens=5, num_beams=2)
    assert generated.shape[0] == len(SOURCES)


def test_integer_tensors_are_taken_from_the_newest():
    a = {"w": torch.tensor([1.0, 2.0]), "steps": torch.tensor([3]), "mask": torch.tensor([True, False])}
    b = {"w": torch.tensor([2.0, 5.0]), "steps": torch.tensor([8]), "mask": torch.tensor([False, False])}
    out = average_state_dicts([a, b])
    assert torch.equal(out["w"], torch.tensor([1.5, 3.5]))  # exact in binary
    assert torch.equal(out["steps"], torch.tensor([8])) and torch.equal(out["mask"], b["mask"])


def test_card_is_copied_with_a_note(tmp_path):
    folders = [save_checkpoint(tmp_path / f"checkpoint-{s}", seed=s, card=(s == 2)) for s in (1, 2)]
    output = average_checkpoints(folders, str(tmp_path / "avg"))
    card = Path(output, "README.md").read_text(encoding="utf-8")
    assert (
        card.startswith("# tiny")
        and "element-wise mean of 2 checkpoints (`checkpoint-1`, `checkpoint-2`)" in card
    )


def test_mismatched_config_is_refused_naming_the_field(tmp_path):
    a = save_checkpoint(tmp_path / "a", seed=0)
    b = save_checkpoint(tmp_path / "b", seed=1, rnn_type="lstm")
    with pytest.raises(ValueError, match="config field 'rnn_type' differs: 'gru' in .* but 'lstm' in"):
        average_checkpoints([a, b], str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_mismatched_vocabulary_is_refused_naming_the_token(tmp_path):
    a = save_checkpoint(tmp_path / "a", seed=0)
    b = save_checkpoint(tmp_path / "b", seed=1)
    # Same size, same config, two tokens swapped: ids mean other words.
    data = json.loads(Path(b, "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    vocab["hola"], vocab["mundo"] = vocab["mundo"], vocab["hola"]
    Path(b, "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(
        ValueError,
        match="tokenizer vocabulary differs: token '(hola|mundo)' has id \\d+ in .* but is id \\d+ in",
    ):
        average_checkpoints([a, b], str(tmp_path / "out"))
    smaller = train_tokenizer(["only three words"], kind="word", vocab_size=100, min_frequency=1)
    smaller.save_pretrained(b)
    with pytest.raises(ValueError, match="vocabulary size differs"):
        average_checkpoints([a, b], str(tmp_path / "out"))


def test_last_checkpoints_and_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    for step in (5, 100, 20):
        save_checkpoint(run / f"checkpoint-{step}", seed=step)
    (run / "checkpoint-200").mkdir()  # cut off before the weights were written: skipped
    (run / "checkpoint-x").mkdir()
    assert last_checkpoints(str(run), 2) == [str(run / "checkpoint-20"), str(run / "checkpoint-100")]
    with pytest.raises(
        ValueError, match="has 3 \\(checkpoint-5, checkpoint-20, checkpoint-100\\).*--save_total_limit 4"
    ):
        last_checkpoints(str(run), 4)

    assert main(["--last", "2", "--run_dir", str(run), "--output", str(tmp_path / "avg")]) == 0
    averaged = load_file(str(tmp_path / "avg" / "model.safetensors"))
    expected = float64_mean([str(run / "checkpoint-20"), str(run / "checkpoint-100")])
    assert averaged.keys() == expected.keys()
    for key, tensor in averaged.items():
        assert torch.equal(tensor, expected[key].float()), key  # weights: bit for bit
    assert (
        main(
            [
                "--checkpoints",
                str(run / "checkpoint-5"),
                str(run / "checkpoint-20"),
                "--output",
                str(tmp_path / "avg2"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    for argv, message in [
        (["--last", "9", "--run_dir", str(run), "--output", str(tmp_path / "x")], "Asked for the last 9"),
        (["--last", "2", "--output", str(tmp_path / "x")], "--last needs --run_dir"),
        (["--checkpoints", str(run / "nope"), "--output", str(tmp_path / "x")], "No checkpoint folder"),
        (["--checkpoints", str(run / "checkpoint-5"), "--output", str(tmp_path / "avg")], "not empty"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "seq2seq-attn average --last 3 --run_dir" in capsys.readouterr().out


def test_truncated_or_corrupted_weights_are_one_line_errors_naming_the_file(tmp_path, capsys):
    a, b = (save_checkpoint(tmp_path / f"checkpoint-{step}", seed=step) for step in (1, 2))
    weights = Path(b) / "model.safetensors"
    data = weights.read_bytes()
    capsys.readouterr()  # the progress bars of save_pretrained
    for damaged in (data[: len(data) // 2], data[:5], b"not a safetensors file at all"):
        weights.write_bytes(damaged)
        with pytest.raises(ValueError, match="model.safetensors' is truncated or corrupted"):
            average_checkpoints([a, b], str(tmp_path / "out"))
        assert main(["--checkpoints", a, b, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(weights) in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing half-written

    # a sharded checkpoint: a broken index, and an index naming a missing shard
    weights.write_bytes(data)
    os.rename(weights, Path(b) / "model-00001-of-00001.safetensors")
    index = Path(b) / "model.safetensors.index.json"
    index.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="index.json' is not a safetensors index"):
        average_checkpoints([a, b], str(tmp_path / "out"))
    index.write_text(json.dumps({"weight_map": {"x": "model-00002-of-00002.safetensors"}}), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors' is missing"):
        average_checkpoints([a, b], str(tmp_path / "out"))


# --------------------------------------------------------------------------------------------
# At the end of a real (tiny) training run
# --------------------------------------------------------------------------------------------
def reversal_dataset(count: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    sources, labels = [], []
    for _ in range(count):
        sequence = [rng.randrange(4, 12) for _ in range(rng.randint(2, 5))]
        sources.append([*sequence, 2])
        labels.append([*reversed(sequence), 2])
    return Dataset.from_dict({"input_ids": sources, "labels": labels})


def collate(features: list[dict]) -> dict[str, torch.Tensor]:
    width = max(len(f["input_ids"]) for f in features)
    label_width = max(len(f["labels"]) for f in features)
    input_ids = torch.tensor([f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features])
    labels = torch.tensor([f["labels"] + [-100] * (label_width - len(f["labels"])) for f in features])
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "labels": labels}


def test_average_and_keep_best_after_training(tmp_path):
    torch.manual_seed(0)
    config = Seq2SeqAttnConfig(vocab_size=12, embedding_size=8, encoder_hidden_size=8, decoder_hidden_size=16)
    model = Seq2SeqAttnForConditionalGeneration(config)
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        max_steps=30,
        learning_rate=1e-2,
        save_strategy="steps",
        save_steps=10,
        eval_strategy="no",
        report_to="none",
        seed=0,
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Seq2SeqAttnTrainer(
        model=model,
        args=args,
        train_dataset=reversal_dataset(480, 1),
        eval_dataset=reversal_dataset(64, 2),
        data_collator=collate,
    )
    trainer.train()
    assert [os.path.basename(f) for f in last_checkpoints(str(tmp_path), 3)] == [
        "checkpoint-10",
        "checkpoint-20",
        "checkpoint-30",
    ]
    final = {k: v.clone() for k, v in model.state_dict().items()}

    outcome = average_and_keep_best(trainer, 3)  # eval_loss, lower is better
    assert outcome.metric == "eval_loss" and not outcome.greater_is_better
    assert json.loads(json.dumps(outcome.to_dict()))["kept"] == outcome.kept
    assert outcome.current != outcome.averaged
    assert outcome.kept == ("averaged" if outcome.averaged <= outcome.current else "current")
    kept_score = outcome.averaged if outcome.kept == "averaged" else outcome.current
    assert trainer.evaluate()["eval_loss"] == kept_score  # the model holds what was kept (same computation)

    # The opposite preference must make the opposite choice, and "current" must restore bit for bit.
    model.load_state_dict(final)
    trainer.args.greater_is_better = True
    flipped = average_and_keep_best(trainer, 3)
    assert flipped.kept != outcome.kept
    assert (flipped.current, flipped.averaged) == (outcome.current, outcome.averaged)
    if flipped.kept == "current":
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, final[name]), name
