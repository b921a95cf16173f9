"""The time budget is training state: it survives a kill and resume, and every DDP rank follows rank 0's clock."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import REPO, TINY, write_pairs
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_seq2seq_attn.training.trainer import TimeBudget, last_complete_checkpoint


def test_budget_state_is_saved_and_restored(tmp_path):
    budget = TimeBudget(minutes=2)
    budget.elapsed_seconds = 45.0
    saved = budget.state()
    assert saved == {"args": {"minutes": 2.0}, "attributes": {"elapsed_seconds": 45.0}}
    # What Trainer does on resume: a TrainerState read from the checkpoint's trainer_state.json.
    state = TrainerState(stateful_callbacks=[budget])
    state.save_to_json(str(tmp_path / "trainer_state.json"))
    resumed_state = TrainerState.load_from_json(str(tmp_path / "trainer_state.json"))
    fresh = TimeBudget(minutes=2)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    fresh.on_train_begin(args, resumed_state, TrainerControl())
    assert fresh.elapsed_seconds == 45.0
    assert fresh.lr_factor(warmup_steps=0)(500) == pytest.approx(1 - 45 / 120)
    fresh.on_step_end(args, resumed_state, TrainerControl())
    assert 45.0 <= fresh.elapsed_seconds < 50.0, "the clock continues from the saved time"


def test_budget_stops_at_its_end_and_saves_only_when_saving_is_on(tmp_path):
    budget = TimeBudget(minutes=1, elapsed_seconds=0)
    budget.on_train_begin(
        TrainingArguments(output_dir=str(tmp_path), report_to="none"), TrainerState(), TrainerControl()
    )
    budget._offset = 61.0  # a minute and a second already spent
    for strategy, expect_save in (("no", False), ("steps", True)):
        args = TrainingArguments(output_dir=str(tmp_path), save_strategy=strategy, report_to="none")
        control = budget.on_step_end(args, TrainerState(), TrainerControl())
        assert control.should_training_stop and control.should_save == expect_save


class StepClock:
    """A monotonic clock that advances one second per reading: the budget's clock then counts steps, exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def test_restored_callback_states_keep_the_budget_driving_the_learning_rate(tmp_path, monkeypatch):
    """`--restore_callback_states_from_checkpoint True` makes transformers rebuild the callback from the
    checkpoint; the learning rate, the logs and results.json must still follow the restored budget."""
    import hf_seq2seq_attn.training.trainer as training
    from hf_seq2seq_attn.training.train import main as train_main

    write_pairs(tmp_path / "train.jsonl", 48)
    output = tmp_path / "run"
    argv = ["--train_file", str(tmp_path / "train.jsonl"), "--output_dir", str(output), *TINY,
            "--max_steps", "12", "--max_train_minutes", "1", "--save_strategy", "steps", "--save_steps", "6",
            "--logging_steps", "1", "--num_attention_plots", "0", "--disable_tqdm", "True"]  # fmt: skip

    def curve(after: int) -> list[tuple[int, float, float]]:
        history = json.loads((output / "trainer_state.json").read_text())["log_history"]
        logged = [e for e in history if "budget_used" in e and e["step"] > after]
        return [(e["step"], e["learning_rate"], e["budget_used"]) for e in logged]

    monkeypatch.setattr(training, "time", StepClock())
    assert train_main(argv) == 0
    uninterrupted = curve(after=6)
    assert checkpoint_elapsed(output / "checkpoint-6") == 6.0
    assert [used for _, _, used in uninterrupted] == [round(step / 60, 4) for step in range(7, 13)]

    monkeypatch.setattr(training, "time", StepClock())  # a new process: its clock reads something else
    resume = ["--resume_from_checkpoint", str(output / "checkpoint-6"),
              "--restore_callback_states_from_checkpoint", "True"]  # fmt: skip
    assert train_main([*argv, *resume]) == 0
    # The same decay from step 7 on as if never stopped, and the budget counts from the checkpoint's 6 s.
    assert curve(after=6) == uninterrupted
    assert json.loads((output / "results.json").read_text())["budget_minutes_used"] == round(12 / 60, 3)


# ----- slow: real processes ---------------------------------------------------------------------------
ARGS = [
    "--tokenizer_kind", "word", "--tokenizer_vocab_size", "50", "--embedding_size", "32",
    "--encoder_hidden_size", "64", "--decoder_hidden_size", "128", "--embedding_dropout", "0.1",
    "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--num_train_epochs", "100000",
    "--max_train_minutes", "2", "--save_strategy", "steps", "--save_steps", "100", "--save_total_limit", "3",
    "--logging_steps", "20", "--report_to", "none", "--seed", "7", "--num_attention_plots", "0",
    "--dataloader_num_workers", "0", "--disable_tqdm", "True",
]  # fmt: skip
PEAK_LR = 3e-3


def environment() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def checkpoint_elapsed(folder: Path) -> float | None:
    state_file = folder / "trainer_state.json"
    if not state_file.exists():
        return None
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError:  # being written
        return None
    return state["stateful_callbacks"]["TimeBudget"]["attributes"]["elapsed_seconds"]


@pytest.mark.slow
def test_killed_run_resumes_its_budget_and_learning_rate_curve(tmp_path):
    train_file, output = tmp_path / "train.jsonl", tmp_path / "run"
    write_pairs(train_file, 64)
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--train_file", str(train_file),
               "--output_dir", str(output), *ARGS]  # fmt: skip
    process = subprocess.Popen(
        command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 400
    while not any((checkpoint_elapsed(c) or 0) >= 50 for c in output.glob("checkpoint-*")):
        assert process.poll() is None, (
            "training ended before it could be killed: " + process.stderr.read()[-2000:]
        )
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (output / "model.safetensors").exists(), "the run finished before the kill"
    checkpoint = Path(last_complete_checkpoint(str(output)))  # what --resume_from_checkpoint True picks
    start_step, resumed_from = int(checkpoint.name.split("-")[1]), checkpoint_elapsed(checkpoint)
    assert resumed_from is not None and resumed_from >= 50

    resumed = subprocess.run([*command, "--resume_from_checkpoint", "True"], env=environment(), capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]

    # In all, the run trained for the budget: the time before the checkpoint plus the resumed run's time.
    total_minutes = resumed_from / 60 + results["train_minutes"]
    assert abs(total_minutes - 2.0) <= 0.2, (resumed_from, results["train_minutes"])
    assert 2.0 <= results["budget_minutes_used"] <= 2.2

    # One learning-rate curve across the kill: lr = peak * (1 - share of the budget used), before and after.
    logged = [entry for entry in history if "learning_rate" in entry and "budget_used" in entry]
    before = [e for e in logged if e["step"] <= start_step]
    after = [e for e in logged if e["step"] > start_step]
    assert before and after, (start_step, [e["step"] for e in logged])
    for entry in logged:
        expected = PEAK_LR * (1 - entry["budget_used"])
        assert abs(entry["learning_rate"] - expected) <= 0.02 * PEAK_LR, entry
    assert after[0]["learning_rate"] <= before[-1]["learning_rate"] + 0.02 * PEAK_LR, "the LR jumped back up"


DDP_SCRIPT = """
import json, sys, time
import torch
from datasets import Dataset
from safetensors.torch import save_file
from transformers import Seq2SeqTrainingArguments

import hf_seq2seq_attn.training.trainer as training
from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration

output = sys.argv[1]
args = Seq2SeqTrainingArguments(output_dir=output, use_cpu=True, per_device_train_batch_size=4, learning_rate=3e-3,
                                num_train_epochs=100000, save_strategy="no", report_to="none", disable_tqdm=True,
                                logging_steps=10, seed=3, remove_unused_columns=False)
rank = args.process_index
if rank == 1:  # this rank's clock runs 25 s ahead: alone, it would stop early and leave rank 0 blocked
    real = time.monotonic
    class SkewedTime:
        monotonic = staticmethod(lambda: real() + 25.0)
    training.time = SkewedTime
torch.manual_seed(0)
config = Seq2SeqAttnConfig(vocab_size=30, embedding_size=16, encoder_hidden_size=16, decoder_hidden_size=32)
model = Seq2SeqAttnForConditionalGeneration(config)
rows = [[4 + (i + k) % 20 for k in range(3 + i % 5)] + [2] for i in range(64)]
dataset = Dataset.from_dict({"input_ids": rows})

def collate(batch):  # copy task: right-padded sources, targets = sources
    width = max(len(row["input_ids"]) for row in batch)
    ids = torch.tensor([row["input_ids"] + [0] * (width - len(row["input_ids"])) for row in batch])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": ids.masked_fill(ids == 0, -100)}

budget = training.TimeBudget(minutes=1.0)
trainer = training.Seq2SeqAttnTrainer(model=model, args=args, train_dataset=dataset, time_budget=budget,
                                      data_collator=collate)
trainer.train()
save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{output}/rank{rank}.safetensors")
lrs = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
json.dump([trainer.state.global_step, budget.elapsed_seconds, lrs], open(f"{output}/rank{rank}.json", "w"))
"""


@pytest.mark.slow
def test_two_ranks_follow_rank_zeros_clock_and_end_with_equal_weights(tmp_path):
    script = tmp_path / "ddp_budget.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(script),
        str(tmp_path),
    ]
    result = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    first, second = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    for name in first:
        assert torch.equal(first[name], second[name]), name  # replicas that took the same steps: bit for bit
    steps0, elapsed0, lrs0 = json.loads((tmp_path / "rank0.json").read_text())
    steps1, elapsed1, lrs1 = json.loads((tmp_path / "rank1.json").read_text())
    assert steps0 == steps1 and elapsed0 == elapsed1 and lrs0 == lrs1
    assert 60 <= elapsed0 < 75, "rank 0's clock, not rank 1's (25 s ahead), ended the run"
