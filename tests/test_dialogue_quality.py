"""Dialogue readability metrics (esc_env.evaluation.dialogue_quality) on hand-written utterances."""

from __future__ import annotations

import math

import pytest

from esc_env.evaluation.dialogue_quality import (
    degenerate_share,
    dialogue_quality,
    echoes_prompt,
    is_degenerate,
    is_role_break,
    max_sentence_repeats,
    opening_on_problem,
    repeated_trigram_share,
    sentences,
    words,
)


def test_words_lowercase_keep_apostrophes_drop_punctuation():
    assert words("I'm so SORRY, I’m so sorry!") == ["i'm", "so", "sorry", "i'm", "so", "sorry"]
    assert words("") == []


def test_sentences_split_at_end_marks_and_lines():
    assert sentences("Hi there. How are you?\nFine; thanks") == ["Hi there.", "How are you?", "Fine;", "thanks"]


@pytest.mark.parametrize(
    "text, share",
    [
        ("I am sad I am sad", 1 / 4),  # T=4 trigrams, D=3 distinct
        ("I'm sorry I'm sorry I'm sorry", 2 / 4),  # T=4, D=2
        ("x y z x y z x y q r s t", 3 / 10),  # T=10, D=7
        ("one two three four", 0.0),
        ("too short", 0.0),
    ],
)
def test_repeated_trigram_share_by_hand(text, share):
    assert repeated_trigram_share(text) == pytest.approx(share)


def test_max_sentence_repeats_counts_the_most_frequent_sentence():
    assert max_sentence_repeats("Ok. ok! Fine. OK.") == 3
    assert max_sentence_repeats("One. Two.") == 1
    assert max_sentence_repeats("") == 0


def test_degenerate_rules_and_their_boundaries():
    assert not is_degenerate("I am sad I am sad")  # 0.25 of trigrams repeat
    assert not is_degenerate("x y z x y z x y q r s t")  # exactly 0.30 is not "over 30%"
    assert is_degenerate("I'm sorry I'm sorry I'm sorry")  # 0.5
    assert is_degenerate("Ok. Ok. Ok.")  # no trigram repeats, but one sentence three times
    assert not is_degenerate("Ok. Ok. Fine.")
    assert degenerate_share(["Ok. Ok. Ok.", "I lost my job.", "Fine.", "I am sad I am sad"]) == pytest.approx(0.25)
    assert math.isnan(degenerate_share([]))


def test_echo_needs_a_run_of_six_words():
    prompt = ["Answer the listener's last message in one or two short sentences."]
    assert echoes_prompt("Okay, answer the listener's last message in a minute.", prompt)  # 6 words in a row
    assert not echoes_prompt("The listener's last message in my inbox.", prompt)  # only 5
    assert not echoes_prompt("anything at all here", [])


def test_role_breaks_by_speaker():
    assert is_role_break("How can I help you today?", "seeker")
    assert not is_role_break("How can I help you today?", "supporter")
    assert is_role_break("I'm here to listen, take your time.", "seeker")
    assert is_role_break("As an AI, I cannot feel that.", "supporter")
    assert is_role_break("I'm sorry for your loss.", "seeker")
    assert is_role_break("It sounds like you're going through a lot.", "seeker")
    assert not is_role_break("I'm sorry, I keep crying.", "seeker")
    assert is_role_break("I lost my job and I feel awful.", "seeker", ["write at most twenty words"]) is False
    assert is_role_break("ok so write at most twenty words please", "supporter", ["Write at most twenty words please."])
    with pytest.raises(ValueError, match="speaker"):
        is_role_break("hi", "listener")


def test_opening_on_problem_by_content_words():
    situation = "I was laid off from my accounting job two weeks ago."
    assert opening_on_problem("I lost my job and I'm scared.", "job crisis", situation)
    assert opening_on_problem("My accountant career is over.", "job crisis", situation)  # stem "accou"
    assert not opening_on_problem("I love sunny weather at the beach.", "job crisis", situation)
    assert not opening_on_problem("I just feel really bad about it today.", "job crisis", situation)  # stopwords only


def test_dialogue_quality_by_hand():
    dialogues = [
        [
            {"speaker": "seeker", "text": "I lost my job."},  # 4 words
            {"speaker": "supporter", "text": "That sounds hard. How can I help you?"},  # 8 words, fine for a supporter
            {"speaker": "seeker", "text": "Ok. Ok. Ok."},  # degenerate, 3 words
        ],
        [
            {"speaker": "seeker", "text": "How can I help you?"},  # role break, 5 words
            {"speaker": "supporter", "text": "Tell me more."},  # 3 words
        ],
    ]
    q = dialogue_quality(dialogues, openings=[("I lost my job.", "job crisis", ""), ("Nice weather.", "job crisis", "")])
    assert q["utterances"] == 5
    assert q["degenerate_share"] == pytest.approx(1 / 5)
    assert q["words_seeker"] == pytest.approx((4 + 3 + 5) / 3)
    assert q["words_supporter"] == pytest.approx((8 + 3) / 2)
    assert q["role_break_share"] == pytest.approx(1 / 5)
    assert q["role_break_seeker"] == pytest.approx(1 / 3)
    assert q["role_break_supporter"] == 0.0
    assert q["opening_on_problem"] == 0.5
    # distinct-1 over all utterances, split on white space after lower-casing: 20 tokens
    tokens = "i lost my job. that sounds hard. how can i help you? ok. ok. ok. how can i help you? tell me more.".split()
    assert q["distinct_1"] == pytest.approx(len(set(tokens)) / len(tokens))
    empty = dialogue_quality([])
    assert empty["utterances"] == 0 and math.isnan(empty["degenerate_share"]) and math.isnan(empty["opening_on_problem"])
