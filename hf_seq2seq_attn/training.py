"""Trainer pieces the train script composes: a wall-clock budget, a non-finite-loss guard, metrics.

Kept in the package (not the script) so they are importable and testable on their own.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import SequentialSampler
from transformers import Seq2SeqTrainer, TrainerCallback

from .metrics import exact_match, phoneme_error_rate, translation_metrics, word_error_rate

logger = logging.getLogger(__name__)

TASKS = ("translation", "g2p")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the weights are left as of the last good step."""


class TimeBudget(TrainerCallback):
    """Stop training cleanly after `minutes` of wall-clock time: evaluate and save one last time.

    The learning rate follows the budget too (linear warm-up, then linear decay to zero as the time
    runs out), so a run that is cut by the clock ends annealed rather than mid-schedule.
    """

    def __init__(self, minutes: float):
        if minutes <= 0:
            raise ValueError(f"The time budget must be positive; got {minutes} minutes.")
        self.seconds = minutes * 60.0
        self.start: float | None = None

    def fraction(self) -> float:
        """Share of the budget spent, 0 before training starts."""
        return 0.0 if self.start is None else (time.monotonic() - self.start) / self.seconds

    def lr_factor(self, warmup_steps: int) -> Callable[[int], float]:
        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
            return warm * max(0.0, 1.0 - self.fraction())

        return factor

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.fraction() >= 1.0:
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = True
            logger.info("Time budget of %.1f minutes reached at step %d: stopping.", self.seconds / 60, state.global_step)
        return control


class Seq2SeqAttnTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` plus an optional wall-clock LR schedule and a hard stop on a non-finite loss."""

    def __init__(self, *args, time_budget: TimeBudget | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.time_budget = time_budget
        if time_budget is not None:
            self.add_callback(time_budget)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.time_budget is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            warmup = self.args.get_warmup_steps(num_training_steps)
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, self.time_budget.lr_factor(warmup))
        return self.lr_scheduler

    def _get_eval_sampler(self, eval_dataset):
        # transformers 5 groups *evaluation* batches by length too when training does; predictions then
        # come back shuffled and metrics against references in dataset order are meaningless.
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The optimizer has not stepped yet: raising here keeps the weights of the last good step.
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"The training loss became {loss.item()} at step {self.state.global_step + 1}. The model was not "
                "updated with it; checkpoints saved so far are intact. Lower --learning_rate, set "
                "--max_grad_norm 1.0, or check the data for empty or extremely long rows."
            )
        return loss


def decode_predictions(tokenizer, predictions: np.ndarray) -> list[str]:
    """Generated ids (padded with -100 by the Trainer) to text."""
    predictions = np.where(predictions < 0, tokenizer.pad_token_id, predictions)
    return [text.strip() for text in tokenizer.batch_decode(predictions, skip_special_tokens=True)]


def task_metrics(task: str, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Metrics for a task; `references[i]` lists the accepted outputs for item i (first = canonical)."""
    if task == "translation":
        return translation_metrics(predictions, [accepted[0] for accepted in references])
    if task == "g2p":
        return {
            "wer": word_error_rate(predictions, references),
            "per": phoneme_error_rate(predictions, references),
            "exact_match": exact_match(predictions, [accepted[0] for accepted in references], normalize_whitespace=True),
        }
    raise ValueError(f"task must be one of {TASKS}; got {task!r}.")


def metrics_function(tokenizer, task: str, references: list[list[str]]):
    """`compute_metrics` for `Seq2SeqTrainer(predict_with_generate=True)` against raw reference strings."""

    def compute(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        predictions = predictions[0] if isinstance(predictions, tuple) else predictions
        texts = decode_predictions(tokenizer, predictions)[: len(references)]  # DDP may pad with duplicates
        return task_metrics(task, texts, references[: len(texts)])

    return compute


def check_output_dir(path: str, needed_bytes: int) -> None:
    """Fail before training if the output folder cannot be written or the disk is nearly full."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write_test")
        with open(probe, "w") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"Cannot write to the output folder {path!r} ({error.strerror}). Choose another --output_dir.") from None
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise ValueError(
            f"Only {free / 2**20:.0f} MiB free under {path!r}, but checkpoints need about "
            f"{needed_bytes / 2**20:.0f} MiB. Free space, lower --save_total_limit, or choose another --output_dir."
        )


# What `Trainer._save_checkpoint` writes; a folder without all of them was cut off mid-write.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder holding every file a resume needs, skipping half-written ones.

    A run killed while saving (SIGKILL, power loss) leaves a partial newest checkpoint; resuming from
    it would fail, so fall back to the one before and say so.
    """
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(name.split("-")[1]) for name in os.listdir(output_dir) if name.startswith("checkpoint-") and name.split("-")[1].isdigit()),
        reverse=True,
    )
    for step in steps:
        folder = os.path.join(output_dir, f"checkpoint-{step}")
        missing = [f for f in CHECKPOINT_FILES if not os.path.exists(os.path.join(folder, f))]
        if not missing:
            return folder
        logger.warning("Skipping incomplete %s (missing %s): it was cut off while being written.", folder, ", ".join(missing))
    return None


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of one saved copy of the weights (tied tensors once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
