"""Mixed precision holds: bf16 training on a CPU tracks float32 (issue 17).

The numerically sensitive parts stay in float32 whatever the compute dtype: the softmax over source positions
(`Seq2SeqAttnAttention.attend`), and the log-softmax of the vocabulary inside the loss (`sequence_loss`).
"""

from __future__ import annotations

import pytest
import torch
from test_learning import FIRST_SYMBOL, SYMBOLS, collate, reversal_data
from transformers import Seq2SeqTrainingArguments

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core.modeling_seq2seq_attn import sequence_loss
from hf_seq2seq_attn.training.trainer import Seq2SeqAttnTrainer

STEPS = 100
# bf16 keeps 8 bits of mantissa (relative rounding 2^-9) in every matmul and recurrent step, so over 100 Adam
# steps the two runs drift apart while learning alike. Measured (2-core Xeon, torch 2.13): the loss falls from
# 2.51 to 0.898 in float32 and to 0.818 in bf16 (9% apart, bf16 ahead). A 15% margin leaves room for other
# CPUs' kernels; a bf16 path that did not learn (a softmax or loss summed in bf16) would stay near 2.
RELATIVE_MARGIN = 0.15


def train_losses(tmp_path, bf16: bool) -> list[float]:
    torch.manual_seed(0)
    config = Seq2SeqAttnConfig(
        vocab_size=FIRST_SYMBOL + SYMBOLS,
        embedding_size=32,
        encoder_hidden_size=32,
        decoder_hidden_size=64,
        embedding_dropout=0.0,
        readout_dropout=0.0,
    )
    model = Seq2SeqAttnForConditionalGeneration(config)
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path / ("bf16" if bf16 else "fp32")),
        per_device_train_batch_size=32,
        learning_rate=5e-3,
        max_steps=STEPS,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=0,
        disable_tqdm=True,
        use_cpu=True,
        bf16=bf16,
    )
    trainer = Seq2SeqAttnTrainer(
        model=model, args=args, train_dataset=reversal_data(STEPS * 32, seed=1), data_collator=collate
    )
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.slow
def test_bf16_training_tracks_float32_on_cpu(tmp_path):
    fp32, bf16 = train_losses(tmp_path, bf16=False), train_losses(tmp_path, bf16=True)
    assert len(fp32) == len(bf16) == STEPS // 10
    assert fp32[-1] < 0.8 * fp32[0], "the float32 run itself must learn for the comparison to mean anything"
    assert abs(bf16[-1] - fp32[-1]) < RELATIVE_MARGIN * fp32[-1], (fp32, bf16)


def test_loss_is_computed_in_float32_from_bf16_logits():
    logits = torch.randn(2, 5, 14) * 4
    labels = torch.randint(0, 14, (2, 5))
    exact = sequence_loss(logits.double(), labels)
    from_bf16 = sequence_loss(logits.bfloat16(), labels)
    assert from_bf16.dtype == torch.float32
    # Only the logits' own rounding to bf16 (relative 2^-9, about 0.04 on logits of size ~8) remains.
    torch.testing.assert_close(from_bf16.double(), exact, atol=0.05, rtol=0)
