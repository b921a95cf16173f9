"""Bad input to the model and config gets a clear, actionable error — never a deep torch traceback."""

import json
import os
import shutil

import pytest
import torch
from helpers import make_config, padded_batch
from safetensors.torch import load_file, save_file

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration


@pytest.fixture(scope="module")
def model():
    return Seq2SeqAttnForConditionalGeneration(make_config()).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    Seq2SeqAttnForConditionalGeneration(make_config()).save_pretrained(folder)
    return folder


def copy_of(folder, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rnn_type", "transformer", "'gru', 'lstm', 'rnn'"),
        ("attention_type", "cosine", "'additive', 'dot', 'general', 'scaled_dot'"),
        ("decoder_style", "fancy", "'bahdanau', 'luong'"),
        ("bridge", "mean", "'linear', 'zero'"),
        ("num_attention_heads", 3, "divisible by num_attention_heads"),
        ("embedding_dropout", 1.5, "[0, 1)"),
        ("vocab_size", 0, "positive integer"),
        ("pad_token_id", 99, "not a token id"),
    ],
)
def test_bad_config_values_name_the_allowed_values(field, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        make_config(**{field: value})


def test_dot_attention_with_mismatched_sizes_explains_the_fix():
    with pytest.raises(ValueError, match="must be equal"):
        Seq2SeqAttnConfig(attention_type="dot", encoder_hidden_size=8, decoder_hidden_size=32)


def test_config_file_with_out_of_range_value_is_rejected_on_load(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["num_attention_heads"] = -2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_attention_heads"):
        Seq2SeqAttnForConditionalGeneration.from_pretrained(folder)


def test_token_ids_outside_vocabulary(model):
    source = padded_batch([4, 3])
    source[0, 1] = 99
    with pytest.raises(ValueError, match="token id 99, outside the model's vocabulary"):
        model(input_ids=source, decoder_input_ids=padded_batch([2, 2]))
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(input_ids=padded_batch([4, 3]), decoder_input_ids=torch.tensor([[1, 50], [1, 2]]))
    with pytest.raises(ValueError, match="labels"):
        model(input_ids=padded_batch([4, 3]), labels=torch.tensor([[5, 77], [5, -100]]))


def test_empty_batch_and_all_padding(model):
    with pytest.raises(ValueError, match="non-empty"):
        model(
            input_ids=torch.zeros(0, 5, dtype=torch.long),
            decoder_input_ids=torch.zeros(0, 1, dtype=torch.long),
        )
    source = padded_batch([4, 3])
    source[1] = 0
    with pytest.raises(ValueError, match=r"\[1\] are all padding"):
        model(input_ids=source, decoder_input_ids=padded_batch([2, 2]))
    with pytest.raises(ValueError, match="all padding"):
        model.generate(source, max_new_tokens=3)


def test_mismatched_or_left_padded_mask(model):
    source = padded_batch([4, 3])
    with pytest.raises(ValueError, match="attention_mask` has shape"):
        model(input_ids=source, attention_mask=torch.ones(2, 7), decoder_input_ids=padded_batch([2, 2]))
    left = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    with pytest.raises(ValueError, match="right-padded"):
        model(input_ids=source, attention_mask=left, decoder_input_ids=padded_batch([2, 2]))


def test_batch_size_mismatch(model):
    with pytest.raises(ValueError, match="differ"):
        model(input_ids=padded_batch([4, 3]), decoder_input_ids=padded_batch([2, 2, 2]))


def test_missing_weights_file(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    os.remove(folder / "model.safetensors")
    with pytest.raises(OSError, match="model.safetensors"):
        Seq2SeqAttnForConditionalGeneration.from_pretrained(folder)


@pytest.mark.parametrize("damage", ["truncate", "tamper_header"])
def test_corrupted_weights_file(saved, tmp_path, damage):
    folder = copy_of(saved, tmp_path)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[10] = ord("X")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupted"):
        Seq2SeqAttnForConditionalGeneration.from_pretrained(folder)


def test_checkpoint_missing_a_tensor_is_not_silently_random(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    weights = load_file(folder / "model.safetensors")
    weights.pop("model.decoder.readout.weight")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks weights"):
        Seq2SeqAttnForConditionalGeneration.from_pretrained(folder)


def test_pickle_weights_are_not_loaded_by_default(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    os.remove(folder / "model.safetensors")
    with pytest.raises(OSError):
        Seq2SeqAttnForConditionalGeneration.from_pretrained(folder)


# ----- things a recurrent model cannot do, and non-integer ids (issue 8) ------------------------
def test_foreign_cache_is_refused_with_a_clear_message(model):
    from transformers import DynamicCache, EncoderDecoderCache

    source = padded_batch([4, 3])
    for cache in (DynamicCache(), EncoderDecoderCache(DynamicCache(), DynamicCache())):
        for name in ("cache", "past_key_values"):  # today's name, and the one before transformers 5.24
            with pytest.raises(ValueError, match="must be the model's own `Seq2SeqAttnCache`"):
                model(input_ids=source, decoder_input_ids=padded_batch([1, 1]), **{name: cache})
            with pytest.raises(ValueError, match="Seq2SeqAttnCache"):
                model.generate(source, max_new_tokens=3, **{name: cache})


@pytest.mark.parametrize("implementation", ["static", "offloaded", "dynamic"])
def test_cache_implementation_is_refused(model, implementation):
    with pytest.raises(ValueError, match="cache_implementation=.*not supported"):
        model.generate(padded_batch([4, 3]), max_new_tokens=3, cache_implementation=implementation)


def test_assisted_decoding_and_prompt_lookup_are_refused(model):
    """A recurrent state cannot be rewound to drop rejected draft tokens; generate() says so (`_is_stateful`)."""
    source = padded_batch([4])
    with pytest.raises(ValueError, match="not supported with stateful models"):
        model.generate(source, max_new_tokens=3, prompt_lookup_num_tokens=2)
    with pytest.raises(ValueError, match="not supported with stateful models"):
        model.generate(source, max_new_tokens=3, assistant_model=model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_non_integer_ids_are_refused(model, dtype):
    source, target = padded_batch([4, 3]), padded_batch([2, 2])
    with pytest.raises(ValueError, match="`input_ids` must be an integer tensor"):
        model(input_ids=source.to(dtype), decoder_input_ids=target)
    with pytest.raises(ValueError, match="`decoder_input_ids` must be an integer tensor"):
        model(input_ids=source, decoder_input_ids=target.to(dtype))
    with pytest.raises(ValueError, match="`labels` must be an integer tensor"):
        model(input_ids=source, labels=target.to(dtype))
    with pytest.raises(ValueError, match="`input_ids` must be an integer tensor"):
        model.generate(source.to(dtype), max_new_tokens=2)


@pytest.mark.parametrize(
    ("name", "hint"), [("luong", "attention_type='general'"), ("Bahdanau", "'additive'")]
)
def test_decoder_style_names_are_refused_as_attention_type(name, hint):
    with pytest.raises(ValueError, match=f"names a decoder_style.*{hint}"):
        make_config(attention_type=name)


def test_old_config_json_with_unset_sizes_still_loads(saved, tmp_path):
    """Configs saved before the sizes were resolved store `null` for both; they load with the defaults."""
    folder = copy_of(saved, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.update(decoder_vocab_size=None, attention_size=None, decoder_hidden_size=16)
    (folder / "config.json").write_text(json.dumps(config))
    loaded = Seq2SeqAttnConfig.from_pretrained(folder)
    assert loaded.decoder_vocab_size == loaded.vocab_size == 23
    assert loaded.attention_size == loaded.decoder_hidden_size == 16
    assert not hasattr(loaded, "target_vocab_size") and not hasattr(loaded, "attention_hidden_size")
    Seq2SeqAttnForConditionalGeneration.from_pretrained(folder)  # and the weights fit


def test_resolved_sizes_are_typed_reads_not_stored():
    """The model reads `decoder_vocab_size`, `attention_size` and the pad and start ids through the config's
    `resolved_*` properties: the same numbers as the fields, never None, and not written into config.json."""
    config = make_config(decoder_vocab_size=None, attention_size=None)
    assert (config.resolved_decoder_vocab_size, config.resolved_attention_size) == (23, 16)
    assert config.resolved_pad_token_id == config.pad_token_id == 0
    assert not any(key.startswith("resolved_") for key in config.to_dict())
    config.decoder_vocab_size, config.attention_size = 12, 8  # later edits (resize_token_embeddings) follow
    assert (config.resolved_decoder_vocab_size, config.resolved_attention_size) == (12, 8)
    assert config.resolved_decoder_start_token_id == config.decoder_start_token_id == 1
    config.pad_token_id = config.decoder_start_token_id = None
    with pytest.raises(ValueError, match="`pad_token_id` is required"):
        config.resolved_pad_token_id  # noqa: B018
    with pytest.raises(ValueError, match="`decoder_start_token_id` is unset"):
        config.resolved_decoder_start_token_id  # noqa: B018
