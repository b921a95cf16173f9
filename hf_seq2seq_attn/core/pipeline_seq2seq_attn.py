"""A `translation` pipeline for Seq2SeqAttn models (transformers 5 removed the built-in task).

Three ways to get one:

- directly: `Seq2SeqAttnTranslationPipeline(model=model, tokenizer=tokenizer)("hola")`;
- in-process by task name, after [`register`]: `pipeline("translation", model=model, tokenizer=tokenizer)`;
- from a saved folder (or Hub repo) in any process, even where this package is not installed:
  `pipeline("translation", model=folder, trust_remote_code=True)`, once [`add_pipeline_to_folder`]
  has written the `custom_pipelines` entry into `config.json` and copied this file next to the model
  files.

This file is copied into model folders as remote code, so it imports nothing from this package:
`transformers` loads it as a flat module beside `modeling_seq2seq_attn.py`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from typing import Any

import torch
from transformers import Pipeline

# Relative, so that a saved folder carries the alignment code along (remote code follows relative imports).
from .alignment_seq2seq_attn import alignment_from_attention, generated_ids, hypothesis_attention

logger = logging.getLogger(__name__)

TASK = "translation"
PIPELINE_CLASS_NAME = "Seq2SeqAttnTranslationPipeline"
# `pipeline()` resolves the names under "pt" with `getattr(transformers, name)`, so they must be classes
# that transformers itself exports: the Auto class then finds our model through the folder's `auto_map`.
PIPELINE_MODEL_CLASSES = ("AutoModelForSeq2SeqLM",)


class Seq2SeqAttnTranslationPipeline(Pipeline):
    """Translate text with a sequence-to-sequence model: `"hola"` -> `[{"translation_text": "hello"}]`.

    Call arguments (also accepted at construction, where they become defaults):
        truncation (`bool`): truncate sources to the tokenizer's `model_max_length`.
        skip_special_tokens (`bool`, defaults to `True`): drop `<s>`, `</s>`, `<pad>` from the text.
        return_alignments (`bool` or `"soft"`, defaults to `False`): add `"alignment"`, the source-target word
            links of each returned sequence in Pharaoh format (`"0-0 1-2"`, from its cross-attention, heads
            averaged), and with `"soft"` also `"soft"`, the `(target words, source words)` attention matrix.
            The alignment code travels with the model (`alignment_seq2seq_attn.py`), so no package is needed.
        **generate_kwargs: passed to `model.generate` (`num_beams`, `max_new_tokens`, `length_penalty`,
            `num_return_sequences`, `do_sample`, `top_k`, `top_p`, `temperature`, ...), on top of the
            model's `generation_config`.

    Returns, for one string, a list with one dict per returned sequence (`num_return_sequences`, 1 by
    default); for a list of strings, one such list per string, or one dict per string when a single
    sequence is returned (as the transformers 4 translation pipeline did).
    """

    # The base class declares these flags as `None` ("not set"); mypy reads that as their type.
    _pipeline_calls_generate = True  # type: ignore[assignment]
    _load_tokenizer = True  # type: ignore[assignment]
    _load_processor = False  # type: ignore[assignment]
    _load_image_processor = False  # type: ignore[assignment]
    _load_video_processor = False  # type: ignore[assignment]
    _load_feature_extractor = False  # type: ignore[assignment]

    @property
    def _text_tokenizer(self) -> Any:
        """The tokenizer, which this pipeline always loads (`_load_tokenizer`)."""
        if self.tokenizer is None:
            raise ValueError(
                "This pipeline needs the model's tokenizer: pass tokenizer=... or a model folder with one."
            )
        return self.tokenizer

    def _sanitize_parameters(
        self,
        truncation: bool | None = None,
        skip_special_tokens: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        return_alignments: bool | str | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess_params: dict[str, Any] = {}
        if return_alignments not in (None, False, True, "soft"):
            raise ValueError(f"return_alignments must be True, False or 'soft'; got {return_alignments!r}.")
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        postprocess_params: dict[str, Any] = {}
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if return_alignments is not None:
            generate_kwargs["return_alignments"] = bool(return_alignments)
            postprocess_params["return_alignments"] = return_alignments
        return preprocess_params, generate_kwargs, postprocess_params

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> list:  # type: ignore[override]
        """Translate one string or a list of strings (see the class docstring for the return shape)."""
        results = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and all(
            isinstance(result, list) and len(result) == 1 for result in results
        ):
            return [result[0] for result in results]
        return results

    def preprocess(self, inputs: str, truncation: bool = False) -> dict[str, torch.Tensor]:  # type: ignore[override]
        if not isinstance(inputs, str):
            raise TypeError(
                f"{type(self).__name__} translates strings or lists of strings; got {type(inputs).__name__}."
            )
        # Right padding is what the model's encoder expects (it packs sequences by length).
        return self._text_tokenizer(inputs, truncation=truncation, return_tensors="pt")

    def _forward(  # type: ignore[override]
        self, model_inputs: dict[str, torch.Tensor], return_alignments: bool = False, **generate_kwargs: Any
    ) -> dict[str, torch.Tensor]:
        input_ids = model_inputs["input_ids"]
        flags = {"output_attentions": True, "return_dict_in_generate": True} if return_alignments else {}
        prepare = getattr(self, "_prepare_generate_kwargs", None)  # transformers >= 5.20
        if prepare is not None:
            generate_kwargs = {**prepare(generate_kwargs), **flags}
        else:
            # Before 5.20 the pipeline keeps its init-time generation parameters in `self.generation_config`.
            # Everything goes into one copy of it (or of the call's own config), since `generate()`
            # deprecates a config passed together with loose generation parameters.
            config: Any = copy.deepcopy(
                generate_kwargs.pop("generation_config", None) or getattr(self, "generation_config", None)
            )
            generate_kwargs = {**config.update(**generate_kwargs, **flags), "generation_config": config}
        output = self.model.generate(  # type: ignore[operator]
            input_ids=input_ids, attention_mask=model_inputs.get("attention_mask"), **generate_kwargs
        )
        output_ids = output.sequences if return_alignments else output
        batch_size = input_ids.shape[0]
        # (B * n, L) -> (B, n, L): the pipeline splits outputs along dim 0, one item per source
        output_ids = output_ids.reshape(batch_size, -1, output_ids.shape[-1])
        if not return_alignments:
            return {"output_ids": output_ids}
        attention = hypothesis_attention(output)  # (B * n, steps, N, S)
        attention = attention.reshape(batch_size, -1, *attention.shape[1:])  # (B, n, steps, N, S)
        return {"output_ids": output_ids, "attentions": attention, "source_ids": input_ids}

    def postprocess(  # type: ignore[override]
        self,
        model_outputs: dict[str, torch.Tensor],
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool | None = None,
        return_alignments: bool | str = False,
    ) -> list[dict[str, Any]]:
        sequences = model_outputs["output_ids"][0]  # (n, L)
        texts = self._text_tokenizer.batch_decode(
            sequences,
            skip_special_tokens=skip_special_tokens,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
        )
        results: list[dict[str, Any]] = [{"translation_text": text} for text in texts]
        if return_alignments:
            pad = self._text_tokenizer.pad_token_id
            source_ids = [token for token in model_outputs["source_ids"][0].tolist() if token != pad]
            eos = {self._text_tokenizer.eos_token_id}
            for result, sequence, weights in zip(
                results, sequences, model_outputs["attentions"][0], strict=True
            ):
                output_ids = generated_ids(sequence.tolist(), eos, pad)
                found = alignment_from_attention(self.tokenizer, source_ids, output_ids, weights)
                result["alignment"] = found.pharaoh()
                if return_alignments == "soft":
                    result["soft"] = found.soft
        return results


def register(task: str = TASK) -> None:
    """Make `pipeline(task, model=model, tokenizer=tokenizer)` build a [`Seq2SeqAttnTranslationPipeline`].

    transformers 5 lists `"translation"` among removed tasks and raises before looking at the
    registry, so registering that name also drops it from `transformers.pipelines.REMOVED_TASKS`
    (a process-wide change). Idempotent. Also makes `pipe.save_pretrained(folder)` write the
    `custom_pipelines` entry and copy this file, like [`add_pipeline_to_folder`].
    """
    from transformers import AutoModelForSeq2SeqLM
    from transformers import pipelines as hf_pipelines

    removed = getattr(hf_pipelines, "REMOVED_TASKS", None)
    if isinstance(removed, dict):
        removed.pop(task, None)
    registry = hf_pipelines.PIPELINE_REGISTRY
    current = registry.supported_tasks.get(task)
    if current is not None and current.get("impl") is Seq2SeqAttnTranslationPipeline:
        return
    registry.register_pipeline(
        task, pipeline_class=Seq2SeqAttnTranslationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
    )


def add_pipeline_to_folder(folder: str | os.PathLike, task: str = TASK) -> None:
    """Let `pipeline(task, model=folder, trust_remote_code=True)` load this pipeline from a saved model.

    Call after `model.save_pretrained(folder)` (which writes `config.json` with `auto_map` and the model
    files) and again after any later save of the model, which rewrites `config.json`. Adds to
    `config.json`:

        "custom_pipelines": {"translation": {"impl": "pipeline_seq2seq_attn.Seq2SeqAttnTranslationPipeline",
                                             "pt": ["AutoModelForSeq2SeqLM"], "type": "text"}}

    and copies this file into `folder`. Other entries in `config.json` are kept.

    Raises:
        `FileNotFoundError`: `folder` or its `config.json` does not exist.
    """
    folder = os.fspath(folder)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"No model folder at {folder!r}; save the model there first.")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{folder!r} has no config.json; call `model.save_pretrained({folder!r})` first."
        )
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    module_name = os.path.splitext(os.path.basename(__file__))[0]
    pipelines = dict(config.get("custom_pipelines") or {})
    pipelines[task] = {
        "impl": f"{module_name}.{PIPELINE_CLASS_NAME}",
        "pt": list(PIPELINE_MODEL_CLASSES),
        "type": "text",
    }
    config["custom_pipelines"] = pipelines
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
        handle.write("\n")
    destination = os.path.join(folder, os.path.basename(__file__))
    if os.path.abspath(destination) != os.path.abspath(__file__):
        shutil.copyfile(__file__, destination)
    logger.info("Added the %r pipeline (%s) to %s", task, PIPELINE_CLASS_NAME, folder)


__all__ = ["Seq2SeqAttnTranslationPipeline", "add_pipeline_to_folder", "register"]
