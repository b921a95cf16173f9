"""Model card rendering and Hub upload for a trained output folder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData
from huggingface_hub.repocard_data import EvalResult
from huggingface_hub.utils import filter_repo_objects

logger = logging.getLogger(__name__)

METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF", "wer": "WER", "per": "PER", "exact_match": "Exact match"}


def _table(rows: dict[str, object], header: tuple[str, str] = ("setting", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return "\n".join(lines)


def render_model_card(
    output_dir: str,
    template_path: str,
    *,
    config,
    test_metrics: dict[str, float],
    hyperparameters: dict[str, object],
    dataset_name: str,
    source_lang: str,
    target_lang: str,
    task: str,
    repo_id: str,
    example_source: str,
    generation: dict[str, object],
    num_train_examples: int,
    max_source_length: int,
    train_minutes: float,
    hardware: str,
    num_parameters: int,
) -> ModelCard:
    """Fill `template_path` (YAML metadata + Jinja body) and write `README.md` into `output_dir`."""
    task_type = "translation" if task == "translation" else "text2text-generation"
    eval_results = [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=name,
            metric_name=METRIC_NAMES.get(name, name),
            metric_value=round(float(value), 2),
        )
        for name, value in test_metrics.items()
        if name in METRIC_NAMES
    ]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="translation" if task == "translation" else "text2text-generation",
        tags=["seq2seq_attn", "custom_code", "rnn", "attention", task],
        datasets=[dataset_name],
        language=sorted({source_lang, target_lang}) if task == "translation" else ["en"],
        license="apache-2.0",
        metrics=[name for name in test_metrics if name in METRIC_NAMES],
        model_name=os.path.basename(os.path.abspath(output_dir)),
        eval_results=eval_results or None,
    )
    images = sorted(p.name for p in Path(output_dir).glob("attention_*.png"))
    fields = (
        "rnn_type",
        "bidirectional",
        "attention_type",
        "num_attention_heads",
        "decoder_style",
        "input_feeding",
        "embedding_size",
        "encoder_hidden_size",
        "decoder_hidden_size",
        "encoder_layers",
        "decoder_layers",
        "vocab_size",
        "tie_word_embeddings",
        "share_encoder_decoder_embeddings",
    )
    card = ModelCard.from_template(
        card_data,
        template_path=template_path,
        model_name=card_data.model_name,
        architecture=f"{'bi' if config.bidirectional else 'uni'}directional {config.rnn_type.upper()} encoder, "
        f"{config.decoder_style} decoder, {config.attention_type} attention x{config.num_attention_heads}",
        dataset_name=dataset_name,
        source_lang=source_lang,
        target_lang=target_lang,
        results_table=_table(
            {METRIC_NAMES.get(k, k): f"{v:.2f}" for k, v in test_metrics.items()}, ("metric", "test")
        ),
        repo_id=repo_id,
        example_source=json.dumps(example_source, ensure_ascii=False),  # a Python string literal, readable
        num_beams=generation.get("num_beams", 1),
        length_penalty=generation.get("length_penalty", 1.0),
        config_table=_table({name: getattr(config, name) for name in fields}),
        num_parameters=f"{num_parameters:,}",
        hyperparameters_table=_table(hyperparameters),
        train_minutes=f"{train_minutes:.1f}",
        hardware=hardware,
        attention_images="\n\n".join(f"![attention]({name})" for name in images) or "(none saved)",
        num_train_examples=f"{num_train_examples:,}",
        max_source_length=max_source_length,
    )
    card.save(os.path.join(output_dir, "README.md"))
    return card


# Never uploaded: training state (checkpoints, TensorBoard runs) is not the model, and pickles can run code
# when loaded and may hold secrets (transformers' `training_args.bin` pickles the Hub token).
PUSH_IGNORE_PATTERNS = ["checkpoint-*", "runs/*", "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle"]


def push_folder(
    output_dir: str, repo_id: str, token: str | None = None, private: bool | None = None
) -> list[str]:
    """Upload the model folder (weights, code, tokenizer, card, pictures) as one commit. Returns the files sent."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        folder_path=output_dir,
        repo_id=repo_id,
        ignore_patterns=PUSH_IGNORE_PATTERNS,
        commit_message="Upload seq2seq_attn model",
    )
    files = sorted(str(p.relative_to(output_dir)) for p in Path(output_dir).rglob("*") if p.is_file())
    sent = list(
        filter_repo_objects(files, ignore_patterns=PUSH_IGNORE_PATTERNS)
    )  # the filter upload_folder applies
    logger.info("Pushed %d files to %s", len(sent), repo_id)
    return sent
