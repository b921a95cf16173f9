"""Offline translation metrics (sacrebleu) and G2P metrics on hand-computed examples."""

import pytest
import sacrebleu

from hf_seq2seq_attn.tools.metrics import (
    corpus_bleu,
    corpus_chrf,
    exact_match,
    levenshtein_distance,
    phoneme_error_rate,
    translation_metrics,
    word_error_rate,
)

REFERENCES = [
    "In the beginning, God created the heavens and the earth.",
    "The earth was formless and empty.",
    "God said, “Let there be light,” and there was light.",
]


def test_bleu_and_chrf_of_identical_corpora_are_100():
    assert corpus_bleu(REFERENCES, REFERENCES) == pytest.approx(100.0)
    assert corpus_chrf(REFERENCES, REFERENCES) == pytest.approx(100.0)
    assert translation_metrics(REFERENCES, REFERENCES) == pytest.approx({"bleu": 100.0, "chrf": 100.0})


def test_bleu_of_unrelated_text_is_low():
    unrelated = ["Stock prices fell sharply on Monday.", "Quantum bits decohere.", "Bake for 20 minutes."]
    assert corpus_bleu(unrelated, REFERENCES) < 5.0
    assert corpus_chrf(unrelated, REFERENCES) < 25.0


def test_partial_overlap_matches_sacrebleu_and_is_between():
    predictions = [
        "In the beginning God made the sky and the earth.",
        "The earth was empty.",
        "God said let there be light and there was light.",
    ]
    bleu = corpus_bleu(predictions, REFERENCES)
    assert 10.0 < bleu < 90.0
    assert bleu == pytest.approx(sacrebleu.corpus_bleu(predictions, [REFERENCES]).score)
    assert corpus_chrf(predictions, REFERENCES) == pytest.approx(
        sacrebleu.corpus_chrf(predictions, [REFERENCES]).score
    )


@pytest.mark.parametrize(
    "metric",
    [corpus_bleu, corpus_chrf, translation_metrics, word_error_rate, phoneme_error_rate, exact_match],
)
def test_length_mismatch_and_empty_raise(metric):
    with pytest.raises(ValueError, match="1 predictions but 2 references"):
        metric(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no predictions"):
        metric([], [])


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("kitten", "sitting", 3),  # k->s, e->i, +g
        ("", "abc", 3),
        ("abc", "", 3),
        ("", "", 0),
        ("flaw", "lawn", 2),  # -f, +n
        (["K", "AE1", "T"], ["K", "AE1", "T"], 0),
        (["K", "AE1", "T"], ["K", "AH0", "T"], 1),
        (["K", "AE1", "T"], ["AE1", "T", "S"], 2),
    ],
)
def test_levenshtein_distance(a, b, distance):
    assert levenshtein_distance(a, b) == distance
    assert levenshtein_distance(b, a) == distance


def test_word_error_rate_with_alternative_references():
    predictions = ["T AH0 M EY1 T OW2", "K AE1 T", "D AO1  G ", "R EH1 D"]
    references = [
        ["T AH0 M EY1 T OW2", "T AH0 M AA1 T OW2"],  # first alternative matches
        ["K AA1 T"],  # wrong
        ["D AA1 G", "D AO1 G"],  # second alternative matches after whitespace normalisation
        ["R IY1 D", "R EH1 D"],  # second alternative matches
    ]
    assert word_error_rate(predictions, references) == pytest.approx(25.0)  # 1 wrong out of 4


def test_word_error_rate_accepts_bare_string_references():
    assert word_error_rate(["A B", "C"], ["A B", "D"]) == pytest.approx(50.0)


def test_phoneme_error_rate_one_substitution_in_four_symbols():
    assert phoneme_error_rate(["AH B C D"], [["AH B X D"]]) == pytest.approx(25.0)


def test_phoneme_error_rate_uses_closest_reference_and_its_length():
    # Distances: 2 to "A B C D E" (two deletions) and 1 to "A B" (one insertion);
    # the closest is "A B" (length 2), so 1 / 2.
    assert phoneme_error_rate(["A B C"], [["A B C D E", "A B"]]) == pytest.approx(50.0)


def test_phoneme_error_rate_sums_over_items_before_dividing():
    # Item 1: 1 error / 4 symbols; item 2: 0 errors / 2 symbols -> 1 / 6 (not the mean 12.5%).
    predictions = ["AH B C D", "E F"]
    references = [["AH B X D"], ["E F"]]
    assert phoneme_error_rate(predictions, references) == pytest.approx(100.0 / 6)


def test_phoneme_error_rate_ties_go_to_first_reference():
    # Both references are 1 edit away; the first (length 2) is used, not the second (length 3).
    assert phoneme_error_rate(["A B"], [["A C", "A B C"]]) == pytest.approx(50.0)


def test_phoneme_error_rate_can_exceed_100():
    assert phoneme_error_rate(["A B C D"], [["E"]]) == pytest.approx(400.0)


def test_references_without_alternatives_raise():
    with pytest.raises(ValueError, match="entry 1"):
        word_error_rate(["A", "B"], [["A"], []])


def test_phoneme_error_rate_of_empty_references_raises():
    with pytest.raises(ValueError, match="undefined"):
        phoneme_error_rate([""], [[""]])


def test_exact_match():
    predictions = ["abc", "a b", "xyz", "a  b"]
    references = ["abc", "a b", "xyy", "a b"]
    assert exact_match(predictions, references) == pytest.approx(50.0)
    assert exact_match(predictions, references, normalize_whitespace=True) == pytest.approx(75.0)
