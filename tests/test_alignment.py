"""Word alignments from cross-attention: token-to-word merging, beam selection, heads, AER, a learned task."""

import random

import numpy as np
import pytest
import torch
from datasets import Dataset
from tiny_inference_model import SOURCES, build_tiny_model
from transformers import Seq2SeqTrainingArguments

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core.tokenization_seq2seq_attn import train_tokenizer
from hf_seq2seq_attn.tools.alignment import (
    Alignment,
    align,
    alignment_error_rate,
    alignment_from_attention,
    format_line,
    generated_ids,
    hard_links,
    hypothesis_attention,
    merge_to_words,
    parse_pharaoh,
    select_head,
    token_words,
)
from hf_seq2seq_attn.training.trainer import Seq2SeqAttnTrainer

SPECIALS = {0, 1, 2}  # <pad>, <s>, </s>; <unk> (3) stands for a source word


# --------------------------------------------------------------------------------------------
# Tokens to words, for each tokenizer kind
# --------------------------------------------------------------------------------------------
def test_bpe_subwords_merge_into_words_and_lone_metaspace_joins_the_next_word():
    tokenizer = train_tokenizer(
        ["hello world there", "the worlds are here"] * 5, kind="bpe", vocab_size=30, min_frequency=1
    )
    ids = tokenizer("hello worlds zz")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["▁hell", "o", "▁world", "s", "▁", "<unk>", "<unk>", "</s>"]
    words, word_of_token = token_words(tokenizer, ids, SPECIALS)
    assert words == ["hello", "worlds", "<unk><unk>"]
    assert word_of_token == [0, 0, 1, 1, 2, 2, 2, None]


def test_word_level_tokens_are_words():
    tokenizer = train_tokenizer(["a b c d"], kind="word", vocab_size=30, min_frequency=1)
    ids = tokenizer("c a zz b")["input_ids"]
    words, word_of_token = token_words(tokenizer, ids, SPECIALS)
    assert words == ["c", "a", "<unk>", "b"]
    assert word_of_token == [0, 1, 2, 3, None]
    # On the target side <unk> is not in the translation text, so it belongs to no word.
    words, word_of_token = token_words(tokenizer, ids, SPECIALS | {3})
    assert words == ["c", "a", "b"]
    assert word_of_token == [0, 1, None, 2, None]


def test_char_level_characters_merge_into_words_and_spaces_join_the_next_word():
    tokenizer = train_tokenizer(["ab cd"], kind="char", vocab_size=30, min_frequency=1)
    ids = tokenizer("ab  dc")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["a", "b", " ", " ", "d", "c", "</s>"]
    words, word_of_token = token_words(tokenizer, ids, SPECIALS)
    assert words == ["ab", "dc"]
    assert word_of_token == [0, 0, 1, 1, 1, 1, None]


# --------------------------------------------------------------------------------------------
# Matrices to links
# --------------------------------------------------------------------------------------------
def test_merge_sums_source_subwords_and_averages_target_subwords():
    # 3 target tokens (words 0, 0, 1), 4 source tokens (words 0, 1, 1, </s>)
    weights = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.1, 0.3], [0.0, 0.6, 0.3, 0.1]])
    soft = merge_to_words(weights, [0, 1, 1, None], [0, 0, 1], 2, 2)
    expected = np.array([[(0.1 + 0.5) / 2, (0.5 + 0.2) / 2], [0.0, 0.9]])
    np.testing.assert_allclose(soft, expected, rtol=0, atol=1e-15)  # float64 sums of a few terms
    assert hard_links(soft) == [(1, 0), (1, 1)]


def test_head_choice_and_average():
    weights = torch.tensor([[[0.9, 0.1], [0.2, 0.8]]])  # (T=1, N=2, S=2)
    np.testing.assert_allclose(select_head(weights, 0), [[0.9, 0.1]], atol=1e-7)  # float32 input
    np.testing.assert_allclose(select_head(weights, 1), [[0.2, 0.8]], atol=1e-7)
    np.testing.assert_allclose(select_head(weights, None), [[0.55, 0.45]], atol=1e-7)
    with pytest.raises(ValueError, match="head=2 does not exist: the model has 2 head"):
        select_head(weights, 2)


def test_pharaoh_format_and_soft_json():
    alignment = Alignment(
        "the house", ["la", "casa"], ["the", "house"], [(0, 0), (1, 1)], [[0.9, 0.1], [0.25, 0.75]]
    )
    assert alignment.pharaoh() == "0-0 1-1"
    assert format_line(alignment) == "the house ||| 0-0 1-1"
    assert format_line(alignment, soft=True) == "the house ||| 0-0 1-1 ||| [[0.9,0.1],[0.25,0.75]]"
    assert parse_pharaoh("0-0 1-1 2p3") == {(0, 0), (1, 1), (2, 3)}


def test_alignment_error_rate_matches_och_and_ney():
    sure = [{(0, 0), (1, 1)}, {(0, 1)}]
    assert alignment_error_rate([{(0, 0), (1, 1)}, {(0, 1)}], sure) == 0.0
    # A = {(0,0),(1,0)} vs S = {(0,0),(1,1)}: 1 - 2*1/(2+2) = 0.5 ; second sentence perfect: 1 - 2*2/(3+3)
    assert alignment_error_rate([{(0, 0), (1, 0)}, {(0, 1)}], sure) == pytest.approx(1 - 4 / 6, abs=1e-12)
    # a predicted link that is only possible counts as right, an unpredicted possible link costs nothing
    assert alignment_error_rate([{(0, 0), (1, 0)}], [{(0, 0)}], [{(1, 0), (2, 2)}]) == pytest.approx(
        1 - 3 / 3
    )


# --------------------------------------------------------------------------------------------
# The attention of the returned hypothesis
# --------------------------------------------------------------------------------------------
def teacher_forced_attention(model, tokenizer, source: str, output_ids: list[int]) -> torch.Tensor:
    """Independent reference: one uncached forward over start + output[:-1], `(T, N, S)`."""
    encoded = tokenizer([source], return_tensors="pt")
    start = model.generation_config.decoder_start_token_id
    decoder_input_ids = torch.tensor([[start, *output_ids[:-1]]])
    with torch.no_grad():
        out = model(**encoded, decoder_input_ids=decoder_input_ids, output_attentions=True, use_cache=False)
    return out.cross_attentions[-1][0].permute(1, 0, 2)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_selected_attention_is_the_hypothesis_own_attention(num_beams):
    model, tokenizer = build_tiny_model(num_attention_heads=2, attention_type="scaled_dot")
    batch = tokenizer(SOURCES, padding=True, return_tensors="pt")
    output = model.generate(
        **batch,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        max_new_tokens=8,
        output_attentions=True,
        return_dict_in_generate=True,
    )
    selected = hypothesis_attention(output)  # (B * num_beams, steps, N, S)
    eos = {model.generation_config.eos_token_id}
    reordered = False
    for row in range(output.sequences.shape[0]):
        source = SOURCES[row // num_beams]
        output_ids = generated_ids(output.sequences[row].tolist(), eos, 0)
        reference = teacher_forced_attention(model, tokenizer, source, output_ids)  # (T, N, S_own)
        width = reference.shape[-1]
        # Cached one-step decoding vs one teacher-forced pass: float32 sums in another order.
        torch.testing.assert_close(
            selected[row, : len(output_ids), :, :width], reference, rtol=1e-4, atol=1e-5
        )
        assert selected[row, : len(output_ids), :, width:].abs().sum() == 0  # padding gets nothing
        if num_beams > 1:
            used = output.beam_indices[row, : len(output_ids)]
            reordered |= bool((used != used[0]).any())
    if num_beams > 1:  # otherwise reading row r of each step would have passed too
        assert reordered, "no beam was reordered: the test would not catch a wrong selection"


def test_align_greedy_and_beam_match_alignment_from_reference_attention():
    model, tokenizer = build_tiny_model(num_attention_heads=2, attention_type="scaled_dot")
    for num_beams in (1, 3):
        for head in (None, 0, 1):
            alignments = align(
                model, tokenizer, SOURCES[:3], num_beams=num_beams, head=head, max_new_tokens=8
            )
            for source, alignment in zip(SOURCES[:3], alignments, strict=True):
                output_ids = tokenizer(alignment.translation)["input_ids"]  # word-level: re-encoding is exact
                reference = teacher_forced_attention(model, tokenizer, source, output_ids)
                expected = alignment_from_attention(
                    tokenizer, tokenizer(source)["input_ids"], output_ids, reference, head
                )
                assert alignment.source_words == source.split()
                assert alignment.target_words == alignment.translation.split()
                assert alignment.pairs == expected.pairs
                np.testing.assert_allclose(alignment.soft, expected.soft, rtol=1e-4, atol=1e-5)
                rows = np.asarray(alignment.soft).sum(axis=1) if alignment.soft else np.zeros(0)
                assert (rows <= 1 + 1e-6).all()


def test_heads_give_different_alignments_when_chosen():
    model, tokenizer = build_tiny_model(num_attention_heads=2, attention_type="scaled_dot")
    with torch.no_grad():  # make head 0 look only at the first source token, head 1 at the last real one
        for name, param in model.named_parameters():
            if "attention" in name and param.dim() == 2:
                param.mul_(40.0)
    soft = {
        head: np.asarray(align(model, tokenizer, ["el gato negro"], head=head, max_new_tokens=4)[0].soft)
        for head in (None, 0, 1)
    }
    np.testing.assert_allclose(soft[None], (soft[0] + soft[1]) / 2, atol=1e-6)  # float32 attention rows
    assert not np.allclose(soft[0], soft[1], atol=1e-3)


def test_empty_source_and_bad_arguments():
    model, tokenizer = build_tiny_model()
    (alignment,) = align(model, tokenizer, [""], max_new_tokens=3)
    assert alignment.source_words == [] and alignment.pairs == []
    with pytest.raises(TypeError, match="list of strings"):
        align(model, tokenizer, "hola")
    with pytest.raises(ValueError, match="num_return_sequences"):
        align(model, tokenizer, ["hola"], num_beams=2, num_return_sequences=2)


def test_pipeline_returns_alignments():
    from hf_seq2seq_attn.core.pipeline_seq2seq_attn import Seq2SeqAttnTranslationPipeline

    model, tokenizer = build_tiny_model()
    translator = Seq2SeqAttnTranslationPipeline(model=model, tokenizer=tokenizer)
    expected = align(model, tokenizer, SOURCES[:2], num_beams=2, max_new_tokens=6)
    results = translator(SOURCES[:2], return_alignments="soft", num_beams=2, max_new_tokens=6)
    for result, alignment in zip(results, expected, strict=True):
        assert result["translation_text"] == alignment.translation
        assert result["alignment"] == alignment.pharaoh()
        np.testing.assert_allclose(result["soft"], alignment.soft, atol=1e-6)  # same float32 weights
    (plain,) = translator(SOURCES[0], return_alignments=True, max_new_tokens=6)
    assert "alignment" in plain and "soft" not in plain
    (nothing,) = translator(SOURCES[0], max_new_tokens=6)
    assert set(nothing) == {"translation_text"}


# --------------------------------------------------------------------------------------------
# A trained model's alignments (sequence reversal: source word i <-> target word n-1-i)
# --------------------------------------------------------------------------------------------
SYMBOLS = [f"w{i}" for i in range(10)]


def reversal_sentences(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(SYMBOLS) for _ in range(rng.randint(3, 7))] for _ in range(count)]


@pytest.mark.slow
def test_trained_reversal_model_aligns_with_low_error_rate(tmp_path):
    tokenizer = train_tokenizer([" ".join(SYMBOLS)], kind="word", vocab_size=100, min_frequency=1)
    train = reversal_sentences(2500, seed=1)
    encoded = tokenizer([" ".join(s) for s in train], text_target=[" ".join(reversed(s)) for s in train])
    dataset = Dataset.from_dict({"input_ids": encoded["input_ids"], "labels": encoded["labels"]})

    def collate(features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        label_width = max(len(f["labels"]) for f in features)
        input_ids = torch.tensor([f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features])
        labels = torch.tensor([f["labels"] + [-100] * (label_width - len(f["labels"])) for f in features])
        return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "labels": labels}

    torch.manual_seed(0)
    config = Seq2SeqAttnConfig(
        vocab_size=len(tokenizer),
        embedding_size=32,
        encoder_hidden_size=64,
        decoder_hidden_size=64,
        attention_type="general",
        decoder_style="luong",
        embedding_dropout=0.0,
        readout_dropout=0.0,
    )
    model = Seq2SeqAttnForConditionalGeneration(config)
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=64,
        learning_rate=1e-2,
        num_train_epochs=5,
        warmup_steps=20,
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=0,
        disable_tqdm=True,
    )
    Seq2SeqAttnTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate).train()
    model.eval()

    test = reversal_sentences(200, seed=2)
    sure = [{(len(s) - 1 - j, j) for j in range(len(s))} for s in test]
    for num_beams in (1, 5):
        alignments = align(model, tokenizer, [" ".join(s) for s in test], num_beams=num_beams)
        correct = sum(a.target_words == list(reversed(s)) for a, s in zip(alignments, test, strict=True))
        assert correct >= 190, (
            f"the model did not learn the task ({correct}/200 reversed), so AER means little"
        )
        aer = alignment_error_rate([a.pairs for a in alignments], sure)
        print(f"num_beams={num_beams}: {correct}/200 exact, AER {100 * aer:.2f}%")
        assert aer <= 0.05, f"AER {aer:.3f} with num_beams={num_beams}"
