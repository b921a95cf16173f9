"""A small model learns to reverse symbol sequences with Seq2SeqTrainer and predict_with_generate."""

import random

import numpy as np
import torch
from datasets import Dataset
from transformers import Seq2SeqTrainingArguments

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.training.trainer import Seq2SeqAttnTrainer

PAD, BOS, EOS, FIRST_SYMBOL, SYMBOLS = 0, 1, 2, 4, 10


def reversal_data(count: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    sources, labels = [], []
    for _ in range(count):
        sequence = [rng.randrange(FIRST_SYMBOL, FIRST_SYMBOL + SYMBOLS) for _ in range(rng.randint(3, 8))]
        sources.append([*sequence, EOS])
        labels.append([*reversed(sequence), EOS])
    return Dataset.from_dict({"input_ids": sources, "labels": labels})


def collate(features: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pad sources with PAD and labels with -100."""
    width = max(len(f["input_ids"]) for f in features)
    label_width = max(len(f["labels"]) for f in features)
    input_ids = torch.tensor([f["input_ids"] + [PAD] * (width - len(f["input_ids"])) for f in features])
    labels = torch.tensor([f["labels"] + [-100] * (label_width - len(f["labels"])) for f in features])
    return {"input_ids": input_ids, "attention_mask": (input_ids != PAD).long(), "labels": labels}


def exact_match(eval_prediction) -> dict[str, float]:
    predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
    hits = 0
    for prediction, label in zip(predictions, labels, strict=True):
        produced = [t for t in prediction.tolist() if t not in (PAD, BOS, -100)]
        produced = produced[: produced.index(EOS) + 1] if EOS in produced else produced
        hits += produced == [t for t in label.tolist() if t not in (-100, PAD)]  # Trainer pads rows with both
    return {"exact_match": 100.0 * hits / len(labels)}


def test_model_learns_to_reverse_sequences(tmp_path):
    torch.manual_seed(0)
    config = Seq2SeqAttnConfig(
        vocab_size=FIRST_SYMBOL + SYMBOLS,
        embedding_size=32,
        encoder_hidden_size=64,
        decoder_hidden_size=64,
        attention_type="general",
        decoder_style="luong",
        embedding_dropout=0.0,
        readout_dropout=0.0,
    )
    model = Seq2SeqAttnForConditionalGeneration(config)
    model.generation_config.max_new_tokens = 12
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=64,
        per_device_eval_batch_size=128,
        learning_rate=1e-2,
        num_train_epochs=6,
        warmup_steps=20,
        lr_scheduler_type="linear",
        predict_with_generate=True,
        generation_num_beams=1,
        generation_max_length=12,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=0,
        disable_tqdm=True,
    )
    trainer = Seq2SeqAttnTrainer(
        model=model,
        args=args,
        train_dataset=reversal_data(4000, seed=1),
        data_collator=collate,
        compute_metrics=exact_match,
    )
    trainer.train()
    metrics = trainer.evaluate(reversal_data(300, seed=2))
    assert metrics["eval_exact_match"] >= 99.0, metrics
    assert np.isfinite(metrics["eval_loss"])
