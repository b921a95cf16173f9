"""Trainer pieces the train command composes: a wall-clock budget, honest progress, a non-finite-loss guard.

Kept apart from the command so they are importable and testable on their own.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import CommitInfo, HfApi
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import SequentialSampler
from tqdm.auto import tqdm
from transformers import ProgressCallback, Seq2SeqTrainer, TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import HubStrategy, SaveStrategy
from transformers.utils.hub import PushInProgress

from ..tools.hub import commit_shared_files, shared_files
from ..tools.metrics import task_metrics

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the weights are left as of the last good step."""


class TimeBudget(TrainerCallback, ExportableState):
    """Stop training cleanly after `minutes` of training time: evaluate and save one last time.

    The learning rate follows the budget too (linear warm-up, then linear decay to zero as the time runs
    out), so a run that is cut by the clock ends annealed rather than mid-schedule.

    The budget is training state, not a property of one process:
    * the elapsed time is saved in every checkpoint (`trainer_state.json`, as an `ExportableState`) and
      restored on resume, so a resumed run continues the same learning-rate curve and trains, in all,
      for the budget;
    * under several processes rank 0's clock is broadcast at every step, so every rank takes the same
      learning rate and stops after the same step (a rank stopping alone would leave the others blocked in
      the gradient all-reduce).
    """

    def __init__(self, minutes: float, elapsed_seconds: float = 0.0):
        if not minutes > 0:
            raise ValueError(f"The time budget must be positive; got {minutes} minutes.")
        self.seconds = minutes * 60.0
        self.elapsed_seconds = elapsed_seconds  # rank 0's clock as of the last optimizer step
        self._offset = elapsed_seconds  # time spent before this process started training
        self._start: float | None = None

    def state(self) -> dict:
        return {
            "args": {"minutes": self.seconds / 60.0},
            "attributes": {"elapsed_seconds": self.elapsed_seconds},
        }

    def fraction(self) -> float:
        """Share of the budget spent (0 at the start), the same on every rank."""
        return self.elapsed_seconds / self.seconds

    def lr_factor(self, warmup_steps: int) -> Callable[[int], float]:
        """`LambdaLR` factor: linear warm-up over `warmup_steps`, then `1 - fraction()` of the budget."""

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
            return warm * max(0.0, 1.0 - self.fraction())

        return factor

    def restart(self) -> None:
        """Forget any time spent: the next `train()` without a checkpoint gets the whole budget."""
        self.elapsed_seconds = self._offset = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, dict):  # resuming: `trainer_state.json` of the checkpoint holds the time spent
            self.elapsed_seconds = float(saved.get("attributes", {}).get("elapsed_seconds", 0.0))
        self._offset = self.elapsed_seconds
        self._start = time.monotonic()

    def _rank0_clock(self, device: torch.device) -> float:
        """Seconds of training so far by rank 0's clock, the same number on every rank."""
        assert self._start is not None, "on_train_begin sets the start"
        elapsed = self._offset + time.monotonic() - self._start
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            clock = torch.tensor([elapsed], dtype=torch.float64, device=device)
            torch.distributed.broadcast(clock, src=0)
            elapsed = float(clock.item())
        return elapsed

    def on_step_end(self, args, state, control, **kwargs):
        self.elapsed_seconds = self._rank0_clock(args.device)
        if self.fraction() >= 1.0:
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"  # no checkpoint nobody asked for
            logger.info(
                "Time budget of %.1f minutes reached at step %d: stopping.",
                self.seconds / 60,
                state.global_step,
            )
        return control


class BudgetProgressCallback(ProgressCallback):
    """The training bar of a budgeted run counts minutes of the budget, not steps of an epoch count that
    only bounds the run (a 6-minute run would otherwise show 0/43,800 steps and hours to go)."""

    def __init__(self, budget: TimeBudget):
        super().__init__()
        self.budget = budget

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = tqdm(
                total=round(self.budget.seconds / 60, 1),
                initial=round(self.budget.elapsed_seconds / 60, 1),
                unit="min",
                # tqdm renders a set postfix as ", step N" (comma included)
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} min of the time budget{postfix}",
                dynamic_ncols=True,
            )
        self.current_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.n = min(round(self.budget.elapsed_seconds / 60, 1), self.training_bar.total)
            self.training_bar.set_postfix_str(f"step {state.global_step}", refresh=False)
            self.training_bar.refresh()
            self.current_step = state.global_step


# transformers' Hub strategies that upload whole checkpoints, so that training can resume from the Hub.
_CHECKPOINT_STRATEGIES = (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS)


def _refuse_checkpoint_pushes(args) -> None:
    """Raise for a Hub strategy that uploads resumable checkpoints: their optimizer state is a pickle."""
    if args is not None and args.push_to_hub and args.hub_strategy in _CHECKPOINT_STRATEGIES:
        raise ValueError(
            f"hub_strategy={HubStrategy(args.hub_strategy).value!r} uploads whole checkpoints, and their "
            "optimizer.pt, scheduler.pt and rng_state.pth are pickles, which run code when loaded: "
            "Seq2SeqAttnTrainer never uploads one. Use hub_strategy='every_save' or 'end' (the model is "
            "pushed) and resume from the checkpoints kept in output_dir."
        )


class Seq2SeqAttnTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` plus an optional time budget, a hard stop on a non-finite loss, and no pickles on
    disk or on the Hub: every push sends only the files `hub.SHARED_FILE_PATTERNS` allows."""

    def __init__(self, *args, time_budget: TimeBudget | None = None, **kwargs):
        # `Trainer.__init__` already creates the Hub repository: refuse before that.
        training_args = kwargs["args"] if "args" in kwargs else (args[1] if len(args) > 1 else None)
        _refuse_checkpoint_pushes(training_args)
        super().__init__(*args, **kwargs)
        if self.args.torch_compile:
            # Without it dynamo refuses to trace `nn.GRU` / `nn.LSTM` modules: every read of the decoder's RNN
            # weights breaks the graph, and the decoder's step loop falls back to eager.
            torch._dynamo.config.allow_rnn = True
        self._hub_api = HfApi()  # one queue for this trainer's background pushes, so they land in order
        if not torch.cuda.is_available():
            # Pinned memory only helps copies to an accelerator; without one, torch warns on every run.
            self.args.dataloader_pin_memory = False
        self.time_budget = time_budget
        if time_budget is not None:
            self.add_callback(time_budget)
            if not self.args.disable_tqdm:
                self.remove_callback(ProgressCallback)
                self.add_callback(BudgetProgressCallback(time_budget))

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if self.time_budget is not None and not resume_from_checkpoint:
            self.time_budget.restart()
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _load_callback_state(self) -> None:
        """Restore callback states as `Trainer` does, then put our budget back in place of the restored copy.

        With `restore_callback_states_from_checkpoint`, transformers replaces each stateful callback by a
        new one built from the checkpoint (`TimeBudget(**args)`, then its attributes). The scheduler's
        learning-rate factor, `log`, the progress bar and the caller hold the original object, which would
        then hear of no step again: the rate would stay at its peak and `budget_used` at 0. So the original
        takes the restored state and its place.
        """
        super()._load_callback_state()
        restored = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, TimeBudget)), None)
        if self.time_budget is None or restored is None or restored is self.time_budget:
            return
        self.time_budget.seconds = restored.seconds
        self.time_budget.elapsed_seconds = restored.elapsed_seconds
        self.callback_handler.remove_callback(restored)
        self.callback_handler.add_callback(self.time_budget)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self.time_budget is not None and "loss" in logs:  # where on the budget's LR curve this step is
            logs["budget_used"] = round(self.time_budget.fraction(), 4)
        super().log(logs, *args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.time_budget is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            warmup = self.args.get_warmup_steps(num_training_steps)
            optimizer = optimizer or self.optimizer
            assert optimizer is not None, "Trainer creates the optimizer before the scheduler"
            self.lr_scheduler = LambdaLR(optimizer, self.time_budget.lr_factor(warmup))
        return self.lr_scheduler

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save as `Trainer` does, but the training arguments as redacted JSON instead of a pickle.

        `Trainer` writes `training_args.bin`, a `torch.save` of the arguments that holds `hub_token` when one
        was passed, into every checkpoint and the final folder. A model folder is meant to be shared: keep
        nothing pickled and nothing secret in it (`to_json_string` masks every `*_token` field).
        """
        super()._save(output_dir, state_dict)
        output_dir = str(output_dir if output_dir is not None else self.args.output_dir)
        if self.args.should_save:
            pickled = os.path.join(output_dir, TRAINING_ARGS_NAME)
            if os.path.exists(pickled):
                os.remove(pickled)
            with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as handle:
                handle.write(self.args.to_json_string())

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Push a checkpoint's model as `Trainer` does (`every_save`), but only its shared files.

        `Trainer` copies the model files up into the output folder, writes `training_args.bin` (a pickle
        holding the Hub token) next to them and uploads the folder, anything else in it included. Here the
        shared files of the checkpoint are copied up and only the shared files of the output folder are
        committed, in the background and in order, as transformers does.
        """
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if (
            not self.args.hub_always_push
            and self.push_in_progress is not None
            and not self.push_in_progress.is_done()
        ):
            return  # as Trainer: skip this save rather than queue pushes faster than they upload
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        output_dir = str(self.args.output_dir)
        # Uploaded from the output folder: the checkpoint may be rotated away before the upload ends.
        for name in shared_files(checkpoint_folder):
            shutil.copy(os.path.join(checkpoint_folder, name), os.path.join(output_dir, name))
        at = (
            f"step {self.state.global_step}"
            if self.args.save_strategy == SaveStrategy.STEPS
            else f"epoch {int(self.state.epoch or 0)}"
        )
        job = self._hub_api.run_as_future(
            commit_shared_files,
            self._hub_api,
            output_dir,
            str(self.hub_model_id),
            f"Training in progress, {at}",
            token=self.args.hub_token,
            revision=self.args.hub_revision,
        )
        # The ignores: transformers types the attribute by its first value (None) and `jobs` as one Future.
        push: PushInProgress | None = self.push_in_progress
        if push is None or push.is_done():
            push = self.push_in_progress = PushInProgress()  # type: ignore[assignment]
        push.jobs.append(job)  # type: ignore[union-attr]

    def push_to_hub(  # type: ignore[override]
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ) -> CommitInfo | Future[CommitInfo] | None:  # as Trainer's does, whose hint says CommitInfo only
        """`Trainer.push_to_hub` (save, write a card, commit), committing only the shared files of the output
        folder. Also what `save_model()` calls when `push_to_hub` is set.

        `Trainer` uploads the whole output folder but checkpoints: any pickle, training state or file naming
        local paths left there would go too.
        """
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        model_name = kwargs.pop("model_name", None)
        if model_name is None and self.args.should_save:
            model_name = (self.args.hub_model_id or Path(str(self.args.output_dir)).name).split("/")[-1]
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        model_tags = getattr(self.model, "model_tags", None) or []
        if model_tags:  # as Trainer: the model's own tags join the card's
            tags = kwargs.get("tags") or []
            tags = [tags] if isinstance(tags, str) else list(tags)
            kwargs["tags"] = tags + [tag for tag in model_tags if tag not in tags]
        self.create_model_card(model_name=model_name, **kwargs)
        self._finish_current_push()
        push = functools.partial(
            commit_shared_files,
            self._hub_api,
            str(self.args.output_dir),
            str(self.hub_model_id),
            commit_message or "End of training",
            token=token,
            revision=revision if revision is not None else self.args.hub_revision,
        )
        return push() if blocking else self._hub_api.run_as_future(push)

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
        raise ValueError(
            f"Cannot write to the output folder {path!r} ({error.strerror}). Choose another --output_dir."
        ) from None
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise ValueError(
            f"Only {free / 2**20:.0f} MiB free under {path!r}, but checkpoints need about "
            f"{needed_bytes / 2**20:.0f} MiB. Free space, lower --save_total_limit, or choose another --output_dir."
        )


# What `Trainer._save_checkpoint` writes; a folder without all of them was cut off mid-write.
CHECKPOINT_FILES = (
    "model.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder holding every file a resume needs, skipping half-written ones.

    A run killed while saving (SIGKILL, power loss) leaves a partial newest checkpoint; resuming from
    it would fail, so fall back to the one before and say so.
    """
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (
            int(name.split("-")[1])
            for name in os.listdir(output_dir)
            if name.startswith("checkpoint-") and name.split("-")[1].isdigit()
        ),
        reverse=True,
    )
    for step in steps:
        folder = os.path.join(output_dir, f"checkpoint-{step}")
        missing = [f for f in CHECKPOINT_FILES if not os.path.exists(os.path.join(folder, f))]
        if not missing:
            return folder
        logger.warning(
            "Skipping incomplete %s (missing %s): it was cut off while being written.",
            folder,
            ", ".join(missing),
        )
    return None


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of one saved copy of the weights (tied tensors once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
