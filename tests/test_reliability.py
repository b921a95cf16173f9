"""Reliability: bad arguments rejected before training, non-finite loss, output folder checks,
generation edge cases, and a property test over random input through the whole stack."""

import shutil
import string
import sys

import pytest
import torch
from helpers import make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_train import TINY, write_pairs
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments, TrainerCallback

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core.tokenization_seq2seq_attn import train_tokenizer
from hf_seq2seq_attn.training.train import main as train_main
from hf_seq2seq_attn.training.trainer import NonFiniteLossError, Seq2SeqAttnTrainer, check_output_dir

CORPUS = [
    "el perro come",
    "la casa es grande",
    "hola mundo",
    "buenos días",
    "the dog eats",
    "hello world",
] * 5


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, kind="bpe", vocab_size=60, min_frequency=1)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = make_config(vocab_size=len(tokenizer), num_attention_heads=2)
    return Seq2SeqAttnForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "train.jsonl"
    write_pairs(path, 24)
    return path


# ----- bad arguments: rejected before any training, one line, exit code 2 --------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attention_type", "cosine"], "`attention_type` must be one of"),
        (["--num_attention_heads", "3"], "must be divisible by num_attention_heads"),
        (["--attention_type", "dot", "--encoder_hidden_size", "8"], "must be equal"),
        (["--rnn_type", "transformer"], "`rnn_type` must be one of"),
        (["--tokenizer_kind", "sentencepiece"], "kind"),
        (["--task", "summarise"], "--task must be one of"),
        (["--recipe", "huge"], "not a shipped recipe"),
    ],
)
def test_bad_arguments_are_rejected_before_training(train_file, tmp_path, capsys, extra, message):
    argv = [
        "--train_file",
        str(train_file),
        "--output_dir",
        str(tmp_path / "m"),
        "--max_steps",
        "2",
        *TINY,
        *extra,
    ]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_resume_without_checkpoint_is_explained(train_file, tmp_path, capsys):
    argv = [
        "--train_file",
        str(train_file),
        "--output_dir",
        str(tmp_path / "m"),
        "--resume_from_checkpoint",
        "True",
        *TINY,
    ]
    assert train_main(argv) == 2
    assert "no checkpoint-* folder" in capsys.readouterr().err


def test_unwritable_output_folder_is_detected_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="Cannot write to the output folder"):
        check_output_dir(str(blocker / "sub"), needed_bytes=1)


def test_full_disk_is_detected_before_training(train_file, tmp_path, capsys, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1024))
    argv = ["--train_file", str(train_file), "--output_dir", str(tmp_path / "m"), "--max_steps", "2", *TINY]
    assert train_main(argv) == 2
    assert "MiB free" in capsys.readouterr().err


# ----- numerical trouble ------------------------------------------------------------------------
def test_non_finite_loss_stops_and_keeps_the_last_good_weights(tokenizer, tmp_path):
    from datasets import Dataset

    model = Seq2SeqAttnForConditionalGeneration(make_config(vocab_size=len(tokenizer)))
    encoded = tokenizer(CORPUS[:16], text_target=CORPUS[:16])
    dataset = Dataset.from_dict({k: encoded[k] for k in ("input_ids", "attention_mask", "labels")})
    calls = {"n": 0}
    original = model.forward

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        output = original(*args, **kwargs)
        if calls["n"] == 3:
            output.loss = output.loss * float("nan")
        return output

    model.forward = poisoned
    snapshots = []

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=6,
        report_to="none",
        save_strategy="no",
        learning_rate=1e-2,
        remove_unused_columns=False,
    )
    trainer = Seq2SeqAttnTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        callbacks=[Snapshot()],
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
    )
    with pytest.raises(NonFiniteLossError, match="became nan at step 3"):
        trainer.train()
    assert len(snapshots) == 2
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[-1][name]), name
        assert torch.isfinite(value).all()


# ----- generation edge cases (documented in the README) -----------------------------------------
def generate(model, tokenizer, texts, **kwargs):
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    return model.generate(**batch, **kwargs)


def test_empty_and_unknown_only_inputs_translate(model, tokenizer):
    out = generate(model, tokenizer, ["", "@@@ ###", "el perro come"], max_new_tokens=5)
    assert out.shape[0] == 3 and out.shape[1] <= 6
    empty = tokenizer([""])["input_ids"][0]
    assert empty == [tokenizer.eos_token_id]


def test_max_new_tokens_zero_is_a_clear_error(model, tokenizer):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, tokenizer, ["hola"], max_new_tokens=0)


def test_more_beams_than_vocabulary(model, tokenizer):
    beams = len(tokenizer) + 5
    out = generate(
        model, tokenizer, ["hola mundo"], num_beams=beams, num_return_sequences=beams, max_new_tokens=3
    )
    assert out.shape[0] == beams
    assert int(out.max()) < len(tokenizer)


def test_short_and_very_long_inputs_in_one_batch(model, tokenizer):
    long = " ".join(["la casa es grande"] * 30)
    batched = generate(model, tokenizer, ["hola", long], max_new_tokens=6, min_new_tokens=6)
    alone = generate(model, tokenizer, ["hola"], max_new_tokens=6, min_new_tokens=6)
    assert torch.equal(batched[0], alone[0])


# ----- property test: random text and random ids through the whole stack -------------------------
DOCUMENTED = (
    "outside the model's vocabulary",
    "all padding",
    "non-empty",
    "right-padded",
    "attention_mask` has shape",
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(
        st.text(alphabet=string.printable + "áéíóúñ¿¡€\u200b\U0001f600", max_size=40), min_size=1, max_size=4
    )
)
def test_random_text_always_translates(model, tokenizer, texts):
    collator = DataCollatorForSeq2Seq(tokenizer, model=model)
    features = [dict(tokenizer(t, text_target=t)) for t in texts]
    batch = collator(features)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    out = generate(model, tokenizer, texts, max_new_tokens=4)
    assert out.shape[0] == len(texts)
    assert all(isinstance(s, str) for s in tokenizer.batch_decode(out, skip_special_tokens=True))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(st.lists(st.integers(-3, 80), min_size=0, max_size=6), min_size=0, max_size=3),
    mask_bits=st.lists(st.booleans(), max_size=18),
)
def test_random_token_ids_give_a_result_or_a_documented_error(model, ids, mask_bits):
    width = max((len(row) for row in ids), default=0)
    tensor = torch.tensor([row + [0] * (width - len(row)) for row in ids], dtype=torch.long).reshape(
        len(ids), width
    )
    mask = None
    if mask_bits and tensor.numel():
        flat = (mask_bits * (tensor.numel() // len(mask_bits) + 1))[: tensor.numel()]
        mask = torch.tensor(flat, dtype=torch.long).reshape(tensor.shape)
    try:
        out = model.generate(tensor, attention_mask=mask, max_new_tokens=3)
    except ValueError as error:
        assert any(text in str(error) for text in DOCUMENTED), str(error)
    else:
        assert out.shape[0] == tensor.shape[0] and int(out.max()) < model.config.vocab_size


def test_tokenizer_and_config_disagreeing_is_rejected(tokenizer):
    from hf_seq2seq_attn.core.tokenization_seq2seq_attn import check_tokenizer_matches_config

    with pytest.raises(ValueError):
        check_tokenizer_matches_config(tokenizer, Seq2SeqAttnConfig(vocab_size=10, pad_token_id=0))
    with pytest.raises(ValueError):
        check_tokenizer_matches_config(
            tokenizer, Seq2SeqAttnConfig(vocab_size=len(tokenizer), eos_token_id=3)
        )


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
