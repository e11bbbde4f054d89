"""Seeker and supporter agents: marker rules, cleaning, batching, on the real embedded model."""

from __future__ import annotations

import numpy as np
import pytest

from agents.backends import GenerationParams
from agents.backends.scripted import ScriptedBackend
from agents.dialogue import Turn
from agents.personas import Persona
from agents.seeker import (
    GIVE_UP_MARKER,
    RELIEF_MARKER,
    SEEKER_FALLBACK,
    SeekerAgent,
    SeekerReply,
    ROLE_ECHO,
    bound_length,
    clean_utterance,
    drop_repeats,
    drop_role_echo,
    limit_words,
    parse_markers,
    split_sentences,
    unlocked_facts,
)
from agents.strategies import AFLOW, ESCONV
from agents.supporter import DEFAULT_FALLBACK, FALLBACKS, SupporterAgent, distinct_labels

# few new tokens: the tests check plumbing and cleaning, not eloquence
FAST = GenerationParams(max_new_tokens=12, temperature=0.7, top_p=0.9, stop=("\nSupporter:", "\nSeeker:"))


def _persona(i: int = 0, opening: str | None = None, background=()) -> Persona:
    return Persona(
        id=f"test/p{i}",
        emotion_type="anxiety",
        problem_type="job crisis",
        situation="I lost my job last week and I don't know how to tell my family.",
        initial_intensity=4,
        opening=opening,
        background=tuple(background),
        traits=("anxious",),
    )


# ---- markers --------------------------------------------------------------------------


def test_marker_constants_are_bracketed_words():
    assert RELIEF_MARKER == "[RELIEVED]" and GIVE_UP_MARKER == "[LEAVE]"


@pytest.mark.parametrize(
    "raw, relieved, gave_up",
    [
        ("Thanks, that helps a lot [RELIEVED]", True, False),
        ("thanks [relieved]", True, False),
        ("(Relieved) thank you", True, False),
        ("thanks <relief>", True, False),
        ("This is pointless. [LEAVE]", False, True),
        ("bye { leave }", False, True),
        ("**LEAVE** whatever", False, True),
        ("I'm out [give up]", False, True),
        ("ok thanks RELIEVED", True, False),
        ("ok thanks\nrelieved", True, False),
        ("whatever\nleave.", False, True),
        # ordinary speech is not a marker
        ("I'm relieved to hear that.", False, False),
        ("I just want to leave this job.", False, False),
        ("Relief would be nice.", False, False),
    ],
)
def test_parse_markers_recognition(raw, relieved, gave_up):
    text, r, g = parse_markers(raw)
    assert (r, g) == (relieved, gave_up)
    if r or g:  # the marker is gone from the text
        assert parse_markers(text)[1:] == (False, False)
        assert "[" not in text and "<" not in text and "**" not in text
    else:
        assert text == raw


def test_both_markers_last_one_wins():
    assert parse_markers("[RELIEVED] no wait, this is useless [LEAVE]")[1:] == (False, True)
    assert parse_markers("[leave]... actually I feel better now [Relieved]")[1:] == (True, False)
    assert parse_markers("LEAVE then RELIEVED")[1:] == (True, False)


def test_markers_removed_from_text():
    text, r, _ = parse_markers("Thank you so much. [RELIEVED]")
    assert r and text == "Thank you so much."
    text, _, g = parse_markers("[LEAVE] Forget it.")
    assert g and text == "Forget it."


# ---- cleaning -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Seeker: I feel awful.", "I feel awful."),
        ("assistant: Seeker: I feel awful.", "I feel awful."),
        ("**Seeker:** I feel awful.", "I feel awful."),
        ("User (me): I feel awful.", "I feel awful."),
        ("I feel awful.\nSupporter: I'm sorry to hear that.\nSeeker: thanks", "I feel awful."),
        ("I feel awful.\nAnna: what happened?", "I feel awful."),
        ('"I feel awful."', "I feel awful."),
        ("“I feel awful.”", "I feel awful."),
        ("  I feel\n\n  awful.  ", "I feel awful."),
        ("<|im_start|>assistant\nI feel awful.<|im_end|>", "I feel awful."),
        ("I feel awful.\n\n(I will continue to respond with a message to the listener)", "I feel awful."),
        ("(sighs) I feel awful (it was my birthday).", "I feel awful (it was my birthday)."),
        ("(I feel awful.", "I feel awful."),
    ],
)
def test_clean_utterance(raw, expected):
    assert clean_utterance(raw, 400) == expected


def test_clean_removes_prompt_echo():
    prompt = "Write only your next chat message: 1 to 3 short sentences, first person, casual."
    raw = prompt + "\nMy boss yelled at me today."
    assert clean_utterance(raw, 400, echo_of=[prompt]) == "My boss yelled at me today."
    prev = "That sounds really hard. How are you holding up?"
    assert clean_utterance(prev + "\nNot great, honestly.", 400, echo_of=[prev]) == "Not great, honestly."


def test_clean_keeps_ordinary_colon_lines_on_first_line():
    assert clean_utterance("Honestly: I don't know.", 400) == "Honestly: I don't know."


@pytest.mark.parametrize("raw", ["", "   ", "\n\n", "...", "Seeker:", '""', "<|im_end|>"])
def test_clean_returns_empty_for_nothing_usable(raw):
    assert clean_utterance(raw, 400) == ""


def test_bound_length_prefers_sentence_end():
    text = "I am tired. " * 10 + "And this sentence goes on and on without a stop"
    out = bound_length(text, 60)
    assert len(out) <= 60 and out.endswith(".")
    long_word_text = "word " * 50
    out = bound_length(long_word_text, 33)
    assert len(out) <= 33 and not out.endswith(" ") and out.split()[-1] == "word"


def test_split_sentences_keeps_end_marks_and_a_tail():
    assert split_sentences("Hi there. How are you?  Fine") == ["Hi there.", "How are you?", "Fine"]
    assert split_sentences('She said "no." Then left!') == ['She said "no."', "Then left!"]
    assert split_sentences("   ") == []


@pytest.mark.parametrize(
    "text, echo, expected",
    [
        ("I'm sorry, I'm sorry, I'm sorry.", (), "I'm sorry."),  # a clause loop inside one sentence
        ("I feel lost. I feel lost! Really.", (), "I feel lost. Really."),  # the same words twice
        ("It's not about being selfish, but kind. I agree.", ("You know, it's not about being selfish, but kind.",), "I agree."),
        ("Thanks so much. I agree.", ("thanks so much",), "Thanks so much. I agree."),  # under 4 words: kept
        ("One. Two. One more.", (), "One. Two. One more."),
    ],
)
def test_drop_repeats(text, echo, expected):
    assert drop_repeats(text, echo) == expected


@pytest.mark.parametrize(
    "text, n, expected",
    [
        ("One two three. Four five six seven. Eight.", 5, "One two three."),
        ("One two three. Four five six seven. Eight.", 8, "One two three. Four five six seven. Eight."),
        ("One two three. Four five six seven. Eight.", 7, "One two three. Four five six seven."),
        ("a b c d e f g h", 4, "a b c d."),  # no sentence end in reach: cut after 4 words
        ("I feel sad, tired and alone today", 5, "I feel sad."),  # cut at the comma
        ("Why, oh why would this happen to me again", 6, "Why, oh why would this happen."),  # comma too early
        ("I can't sleep. My mind keeps going back to the", 20, "I can't sleep."),  # cut off mid-sentence: dropped
        ("My mind keeps going back to the", 20, "My mind keeps going back to the"),  # nothing complete before it
    ],
)
def test_limit_words_cuts_at_a_sentence_end(text, n, expected):
    assert limit_words(text, n) == expected
    assert len(limit_words(text, n).split()) <= n


def test_drop_role_echo_removes_helper_sentences():
    assert drop_role_echo("I'm here for you. My dog died.") == "My dog died."
    assert drop_role_echo("How can I help you today? I can't sleep.") == "I can't sleep."
    assert drop_role_echo("As an AI, I cannot. Fine.") == "Fine."
    assert drop_role_echo("My sister is here for the weekend.") == "My sister is here for the weekend."


def test_clean_utterance_word_limit_and_loops():
    raw = "I'm so sorry, I'm so sorry. I lost my job today and it hurts. I lost my job today and it hurts. I can't sleep at all now."
    out = clean_utterance(raw, 400, max_words=20, role_echo=ROLE_ECHO)
    assert out == "I'm so sorry. I lost my job today and it hurts. I can't sleep at all now."
    assert clean_utterance(raw, 400, max_words=10) == "I'm so sorry."
    assert clean_utterance("How can I help you? I feel awful.", 400, role_echo=ROLE_ECHO) == "I feel awful."


def test_seeker_and_supporter_prompts_carry_the_word_limits(backend):
    assert "at most 20 words" in SeekerAgent(backend).system_prompt(_persona())
    assert "at most 12 words" in SeekerAgent(backend, max_words=12).system_prompt(_persona())
    assert "at most 25 words" in SupporterAgent(backend).system_prompt("Question")
    long = "I lost my job. " + "I keep thinking about the money all the time and about my kids. " * 3
    assert len(SeekerAgent(backend).parse(long).text.split()) <= 20
    assert len(SupporterAgent(backend).clean("That sounds so hard. " + "Tell me what worries you most about it now. " * 4).split()) <= 25
    with pytest.raises(ValueError, match="max_words"):
        SeekerAgent(backend, max_words=0)
    with pytest.raises(ValueError, match="context_turns"):
        SupporterAgent(backend, reply_context_turns=0)


def test_agents_see_only_recent_turns(backend):
    d = [Turn("seeker" if i % 2 == 0 else "supporter", f"utterance {i}") for i in range(9)]
    seeker_conv = SeekerAgent(backend, context_turns=4).conversation(_persona(), d[:8])
    texts = " ".join(m["content"] for m in seeker_conv[1:])
    assert "utterance 3" not in texts and "utterance 4" in texts and "utterance 7" in texts
    sup_conv = SupporterAgent(backend, reply_context_turns=3).conversation(d, "Question")
    texts = " ".join(m["content"] for m in sup_conv[1:])
    assert "utterance 5" not in texts and "utterance 6" in texts and "utterance 8" in texts
    full = SeekerAgent(backend, context_turns=None).conversation(_persona(), d[:8])
    assert "utterance 0" in " ".join(m["content"] for m in full[1:])


def test_seeker_parse_fallback_and_flags(backend):
    agent = SeekerAgent(backend, max_chars=120)
    r = agent.parse("")
    assert isinstance(r, SeekerReply) and r.text == SEEKER_FALLBACK and not r.relieved and not r.gave_up and r.raw == ""
    r = agent.parse("[LEAVE]")
    assert r.gave_up and not r.relieved and r.text == SEEKER_FALLBACK
    r = agent.parse("Seeker: Thanks, I feel lighter now. [RELIEVED]\nSupporter: glad to help")
    assert r.relieved and r.text == "Thanks, I feel lighter now."
    r = agent.parse("x" * 50 + ". " + "y" * 500)
    assert 0 < len(r.text) <= 120


# ---- persona facts --------------------------------------------------------------------


def test_facts_are_unlocked_one_per_turn(backend):
    p = _persona(background=("FACT-ONE about kids.", "FACT-TWO about savings.", "FACT-THREE about health."))
    assert unlocked_facts(p, 0) == ()
    assert unlocked_facts(p, 1) == ("FACT-ONE about kids.",)
    assert unlocked_facts(p, 5) == p.background
    agent = SeekerAgent(backend)
    d = [Turn("seeker", "hi"), Turn("supporter", "hello, what is going on?")]
    system = agent.conversation(p, d)[0]["content"]
    assert "FACT-ONE" in system and "FACT-TWO" not in system and "FACT-THREE" not in system
    assert "FACT-ONE" not in agent.conversation(p, [])[0]["content"]
    assert RELIEF_MARKER in system and GIVE_UP_MARKER in system and p.situation in system


def test_only_the_newest_fact_is_shown(backend):
    p = _persona(background=("FACT-ONE about kids.", "FACT-TWO about savings.", "FACT-THREE about health."))
    agent = SeekerAgent(backend)
    d = [Turn("seeker", "hi"), Turn("supporter", "hello?"), Turn("seeker", "it's hard"), Turn("supporter", "go on")]
    system = agent.conversation(p, d)[0]["content"]  # two seeker messages sent: two facts unlocked
    assert "FACT-TWO" in system and "FACT-ONE" not in system and "FACT-THREE" not in system


class _RecordingBackend(ScriptedBackend):
    """A scripted backend that also keeps the GenerationParams of every generate call."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.params_seen: list[GenerationParams] = []

    def _generate(self, conversations, params):
        self.params_seen.append(params)
        return super()._generate(conversations, params)


def test_opening_has_no_repetition_penalty_and_turns_keep_theirs():
    rec = _RecordingBackend(replies=lambda conv: "I lost my job and I feel ashamed.")
    agent = SeekerAgent(rec)
    assert agent.params.repetition_penalty > 1.0  # the default turns keep the penalty
    agent.open([_persona()], seed=3)
    agent.reply([_persona()], [[Turn("seeker", "hi"), Turn("supporter", "What happened?")]], seed=4)
    opening, turn = rec.params_seen
    assert opening.repetition_penalty == 1.0 and opening.no_repeat_ngram_size == agent.params.no_repeat_ngram_size
    assert turn.repetition_penalty == agent.params.repetition_penalty
    assert (opening.seed, turn.seed) == (3, 4)
    # both stop once the reply holds more words than the cleaning keeps
    assert opening.max_words == turn.max_words == agent.max_words
    custom = SeekerAgent(rec, params=FAST.replace(repetition_penalty=1.3), max_words=7)
    assert custom.opening_params == FAST  # own params, penalty off
    custom.open([_persona()])
    assert rec.params_seen[-1].max_words == 7


def test_supporter_stops_at_its_word_limit():
    rec = _RecordingBackend(replies=lambda conv: "That sounds hard.")
    SupporterAgent(rec, max_words=9).respond([[Turn("seeker", "I lost my job.")]], ["Question"])
    assert rec.params_seen[-1].max_words == 9
    SupporterAgent(rec, max_words=None).respond([[Turn("seeker", "I lost my job.")]], ["Question"])
    assert rec.params_seen[-1].max_words is None


def test_seeker_conversation_roles_alternate(backend):
    agent = SeekerAgent(backend)
    d = [Turn("seeker", "hi"), Turn("seeker", "anyone?"), Turn("supporter", "I'm here.")]
    conv = agent.conversation(_persona(), d)
    roles = [m["role"] for m in conv]
    assert roles[0] == "system" and roles[-1] == "user"
    assert all(a != b for a, b in zip(roles[1:], roles[2:]))


# ---- seeker with the model ------------------------------------------------------------


def test_persona_opening_used_verbatim_without_a_call(backend):
    agent = SeekerAgent(backend, params=FAST)
    opening = "Hi. I got fired today and I feel like a failure."
    calls = backend.usage.calls
    out = agent.open([_persona(0, opening), _persona(1, opening)])
    assert backend.usage.calls == calls
    assert [r.text for r in out] == [opening, opening]
    assert all(not r.relieved and not r.gave_up for r in out)


def test_open_generates_the_rest_in_one_call(backend):
    agent = SeekerAgent(backend, params=FAST, max_chars=150)
    fixed = "My partner left and I can't stop crying."
    calls = backend.usage.calls
    out = agent.open([_persona(0), _persona(1, fixed), _persona(2)], seed=3)
    assert backend.usage.calls == calls + 1
    assert len(out) == 3 and out[1].text == fixed
    for r in out:
        assert isinstance(r.text, str) and r.text.strip() and len(r.text) <= 150


def test_reply_is_one_call_and_well_formed(backend):
    agent = SeekerAgent(backend, params=FAST, max_chars=100)
    personas = [_persona(i, background=("I have two kids.",)) for i in range(3)]
    dialogues = [
        [Turn("seeker", "I lost my job."), Turn("supporter", "I'm sorry. How are you feeling?")],
        [Turn("supporter", "Hello, what brings you here?")],
        [Turn("seeker", "hi"), Turn("supporter", "Hi! What's on your mind?", "Question")],
    ]
    calls = backend.usage.calls
    out = agent.reply(personas, dialogues, seed=0)
    assert backend.usage.calls == calls + 1
    assert len(out) == 3
    for r in out:
        assert isinstance(r, SeekerReply)
        assert r.text.strip() and len(r.text) <= 100
        assert not (r.relieved and r.gave_up)
        assert "[" not in r.text or "]" not in r.text or RELIEF_MARKER not in r.text
        assert not r.text.lower().startswith(("seeker:", "supporter:", "user:", "assistant:"))


def test_reply_is_reproducible_with_seed(backend):
    agent = SeekerAgent(backend, params=FAST)
    d = [[Turn("seeker", "I feel low."), Turn("supporter", "What happened?")]]
    a = agent.reply([_persona()], d, seed=11)[0].raw
    b = agent.reply([_persona()], d, seed=11)[0].raw
    assert a == b


def test_reply_validates_lengths(backend):
    agent = SeekerAgent(backend, params=FAST)
    with pytest.raises(ValueError):
        agent.reply([_persona()], [[], []])
    assert agent.reply([], []) == []


# ---- supporter ------------------------------------------------------------------------


def test_distinct_labels():
    assert distinct_labels(ESCONV.names) == [
        "Question", "Restatement", "Reflection", "Self-disclosure", "Affirmation", "Providing", "Information", "Others",
    ]
    labels = distinct_labels(AFLOW.names)
    assert len(set(labels)) == len(labels) == 8
    assert distinct_labels(["Ask why", "Ask how", "Listen"]) == ["Ask why", "Ask how", "Listen"]
    assert distinct_labels(["Ask", "Ask more"]) == ["Ask", "Ask more"]


def test_supporter_prompt_carries_the_strategy_definition(backend):
    agent = SupporterAgent(backend, "esconv")
    system = agent.system_prompt("reflection of feelings")
    assert ESCONV.definition("Reflection of feelings") in system
    assert ESCONV.definition("Question") not in system
    assert "Reflection" not in agent.system_prompt(None)


def test_supporter_respond_one_call_never_empty(backend):
    agent = SupporterAgent(backend, "esconv", params=GenerationParams(max_new_tokens=12, temperature=0.7, top_p=0.9), max_chars=120)
    dialogues = [
        [Turn("seeker", "I failed my exam and my parents will be furious.")],
        [Turn("seeker", "hi"), Turn("supporter", "Hello!"), Turn("seeker", "I can't sleep.")],
        [],
    ]
    calls = backend.usage.calls
    out = agent.respond(dialogues, ["Question", None, "Providing Suggestions"], seed=1)
    assert backend.usage.calls == calls + 1
    assert len(out) == 3
    for text in out:
        assert isinstance(text, str) and text.strip() and len(text) <= 120
        assert not text.lower().startswith(("supporter:", "assistant:"))


def test_supporter_unknown_strategy_raises(backend):
    agent = SupporterAgent(backend, "esconv")
    with pytest.raises(KeyError):
        agent.respond([[Turn("seeker", "hi")]], ["Hypnosis"])


def test_supporter_clean_fallbacks(backend):
    agent = SupporterAgent(backend, "esconv")
    assert agent.clean("", strategy="Question") == FALLBACKS["question"]
    assert agent.clean("   ...  ", strategy=None) == DEFAULT_FALLBACK
    assert agent.clean("Supporter: [Question] What happened next?\nSeeker: well", strategy="Question") == "What happened next?"
    assert agent.clean("Question: What happened next?") == "What happened next?"


def test_strategy_probs_rows_sum_to_one(backend):
    for name in ("esconv", "aflow"):
        agent = SupporterAgent(backend, name)
        dialogues = [
            [Turn("seeker", "I lost my job and I feel worthless.")],
            [],
            [Turn("seeker", "hi"), Turn("supporter", "Hello! How can I help?"), Turn("seeker", "🙂" * 30)],
        ]
        calls = backend.usage.calls
        p = agent.strategy_probs(dialogues)
        assert backend.usage.calls == calls + 1
        assert p.shape == (3, 8) and p.dtype == np.float64
        assert np.all(np.isfinite(p)) and np.all(p >= 0)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
        assert p.max(axis=1).min() < 1.0  # not a degenerate one-hot: real log-probabilities
    assert SupporterAgent(backend).strategy_probs([]).shape == (0, 8)
