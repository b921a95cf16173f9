"""Model card rendering and Hub upload for a trained output folder."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard, ModelCardData
from huggingface_hub.repocard_data import EvalResult

logger = logging.getLogger(__name__)

CARD_TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF", "wer": "WER", "per": "PER", "exact_match": "Exact match"}


def _table(rows: dict[str, object], header: tuple[str, str] = ("setting", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return "\n".join(lines)


# The config fields the card's "Model" table shows, in reading order.
CARD_CONFIG_FIELDS = (
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


@dataclass(frozen=True)
class CardFacts:
    """What a training run knows that its model card tells: data, scores, settings, cost."""

    dataset_name: str
    source_lang: str
    target_lang: str
    task: str
    repo_id: str  # the Hub id when pushed, else the output folder
    example_source: str
    test_metrics: dict[str, float]
    hyperparameters: dict[str, object]
    generation: dict[str, object]  # num_beams, length_penalty of the test scores
    num_train_examples: int
    max_source_length: int
    train_minutes: float
    hardware: str
    num_parameters: int

    @property
    def pipeline_tag(self) -> str:
        return "translation" if self.task == "translation" else "text2text-generation"

    @property
    def reported_metrics(self) -> dict[str, float]:
        """The test scores the Hub knows how to show (BLEU, chrF, WER, ...)."""
        return {name: value for name, value in self.test_metrics.items() if name in METRIC_NAMES}


def render_model_card(output_dir: str, template_path: str, config, facts: CardFacts) -> ModelCard:
    """Fill `template_path` (YAML metadata + Jinja body) and write `README.md` into `output_dir`."""
    card_data = _card_data(facts, model_name=os.path.basename(os.path.abspath(output_dir)))
    images = sorted(p.name for p in Path(output_dir).glob("attention_*.png"))
    card = ModelCard.from_template(
        card_data,
        template_path=template_path,
        **_template_values(config, facts, card_data.model_name, images),
    )
    card.save(os.path.join(output_dir, "README.md"))
    return card


def _card_data(facts: CardFacts, model_name: str) -> ModelCardData:
    """The card's YAML metadata: what the Hub indexes (task, languages, datasets, scores)."""
    eval_results = [
        EvalResult(
            task_type=facts.pipeline_tag,
            dataset_type=facts.dataset_name,
            dataset_name=facts.dataset_name,
            dataset_split="test",
            metric_type=name,
            metric_name=METRIC_NAMES[name],
            metric_value=round(float(value), 2),
        )
        for name, value in facts.reported_metrics.items()
    ]
    translation = facts.task == "translation"
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=facts.pipeline_tag,
        tags=["seq2seq_attn", "custom_code", "rnn", "attention", facts.task],
        datasets=[facts.dataset_name],
        language=sorted({facts.source_lang, facts.target_lang}) if translation else ["en"],
        license="apache-2.0",
        metrics=list(facts.reported_metrics),
        model_name=model_name,
        eval_results=eval_results or None,
    )


def _template_values(config, facts: CardFacts, model_name: str | None, images: list[str]) -> dict[str, Any]:
    """The Jinja variables of `templates/model_card.md`."""
    return dict(
        model_name=model_name,
        architecture=f"{'bi' if config.bidirectional else 'uni'}directional {config.rnn_type.upper()} encoder, "
        f"{config.decoder_style} decoder, {config.attention_type} attention x{config.num_attention_heads}",
        dataset_name=facts.dataset_name,
        source_lang=facts.source_lang,
        target_lang=facts.target_lang,
        results_table=_table(
            {METRIC_NAMES.get(k, k): f"{v:.2f}" for k, v in facts.test_metrics.items()}, ("metric", "test")
        ),
        repo_id=facts.repo_id,
        example_source=json.dumps(
            facts.example_source, ensure_ascii=False
        ),  # a Python string literal, readable
        num_beams=facts.generation.get("num_beams", 1),
        length_penalty=facts.generation.get("length_penalty", 1.0),
        config_table=_table({name: getattr(config, name) for name in CARD_CONFIG_FIELDS}),
        num_parameters=f"{facts.num_parameters:,}",
        hyperparameters_table=_table(facts.hyperparameters),
        train_minutes=f"{facts.train_minutes:.1f}",
        hardware=facts.hardware,
        attention_images="\n\n".join(f"![attention]({name})" for name in images) or "(none saved)",
        num_train_examples=f"{facts.num_train_examples:,}",
        max_source_length=facts.max_source_length,
    )


# The files of a model folder that leave the machine (a Hub push, a Space): what loading the model and
# reading its card need. An allow-list, so whatever else training leaves in the folder stays local, kinds
# of file nobody has thought of yet included: checkpoints, `trainer_state.json` and `training_args.json`
# (local paths), test predictions, TensorBoard runs, and pickles (`*.bin`, `*.pt`, ...: they run code when
# loaded, and transformers' `training_args.bin` holds the Hub token). `results.json` is shared: it holds
# metrics and timings only (the train command writes checkpoint names, not paths), the machine-readable
# form of the card's numbers.
SHARED_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",  # shards, with the index above
    "*.py",  # remote code: configuration, modeling, pipeline, tokenization modules
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.model",  # SentencePiece
    "README.md",
    "attention_*.png",  # pictures the card shows
    "results.json",
)
# Shared files whose text may name local paths: the card's usage lines, `_name_or_path`, checkpoint paths.
_TEXT_SUFFIXES = (".json", ".md")


def shared_files(folder: str) -> list[str]:
    """Names of the files at the top of `folder` that `SHARED_FILE_PATTERNS` lets out, sorted."""
    return sorted(
        name
        for name in os.listdir(folder)
        if os.path.isfile(os.path.join(folder, name))
        and any(fnmatch.fnmatchcase(name, pattern) for pattern in SHARED_FILE_PATTERNS)
    )


def _local_forms(folder: str) -> list[str]:
    """The absolute spellings of `folder` a file may contain, longest first (a symlinked path has two)."""
    forms = {os.path.abspath(folder), os.path.realpath(folder)}
    return sorted(forms | {json.dumps(f)[1:-1] for f in forms}, key=len, reverse=True)  # + JSON-escaped forms


def _without_local_paths(text: str, folder: str, replacement: str, is_json: bool) -> str:
    """`text` with the folder's absolute path, and any absolute `_name_or_path`, replaced by `replacement`."""
    for form in _local_forms(folder):
        text = text.replace(form, json.dumps(replacement)[1:-1] if is_json else replacement)
    if not is_json or "name_or_path" not in text:
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text
    # transformers < 5 wrote where a config or tokenizer was loaded from; elsewhere than `folder` too.
    keys = [k for k in ("_name_or_path", "name_or_path") if isinstance(data, dict) and k in data]
    named = [k for k in keys if isinstance(data[k], str) and _is_absolute(data[k])]
    if not named:
        return text
    data.update(dict.fromkeys(named, replacement))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _is_absolute(path: str) -> bool:
    """A local path of this system or another (POSIX `/...`, `~/...`, Windows `C:\\...`); not a Hub id."""
    return path.startswith(("/", "\\", "~")) or path[1:3] in (":\\", ":/")


def shared_content(folder: str, name: str, replacement: str) -> bytes | None:
    """The bytes to share for `name` (a text file with local paths replaced by `replacement`); None for a file
    shared as it is on disk (weights, code, pictures)."""
    if not name.endswith(_TEXT_SUFFIXES):
        return None
    text = Path(folder, name).read_text(encoding="utf-8")
    return _without_local_paths(text, folder, replacement, name.endswith(".json")).encode("utf-8")


def copy_shared_files(folder: str, destination: str, replacement: str | None = None) -> list[str]:
    """Copy the shared files of `folder` into `destination`, local paths replaced by `replacement` (default:
    the name of `destination`, the folder the copy is loaded as). Returns the names copied."""
    replacement = replacement or os.path.basename(os.path.normpath(destination))
    os.makedirs(destination, exist_ok=True)
    names = shared_files(folder)
    for name in names:
        content = shared_content(folder, name, replacement)
        if content is None:
            shutil.copy2(os.path.join(folder, name), os.path.join(destination, name))
        else:
            Path(destination, name).write_bytes(content)
    return names


def commit_shared_files(
    api: HfApi,
    folder: str,
    repo_id: str,
    commit_message: str,
    token: str | None = None,
    revision: str | None = None,
) -> CommitInfo:
    """Commit the shared files of `folder` to `repo_id`, local paths in them named as the repository."""
    operations = [
        CommitOperationAdd(
            path_in_repo=name,
            path_or_fileobj=shared_content(folder, name, repo_id) or os.path.join(folder, name),
        )
        for name in shared_files(folder)
    ]
    return api.create_commit(
        repo_id, operations, commit_message=commit_message, token=token, revision=revision
    )


def push_folder(
    output_dir: str, repo_id: str, token: str | None = None, private: bool | None = None
) -> list[str]:
    """Upload the shared files of the model folder (`SHARED_FILE_PATTERNS`) as one commit. Returns them."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit_shared_files(api, output_dir, repo_id, "Upload seq2seq_attn model")
    sent = shared_files(output_dir)
    logger.info("Pushed %d files to %s", len(sent), repo_id)
    return sent
