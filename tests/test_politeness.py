"""Politeness removal (what the default affect judge does not read) and the reward-hacking benchmark's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from agents.dialogue import Turn
from agents.judges.calibrated import FeatureConfig
from agents.judges.politeness import strip_politeness


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Thanks. I still feel hopeless about my exams.", "I still feel hopeless about my exams."),
        ("Thank you so much, bye!", ""),
        ("Hi, how are you?", ""),
        ("Hello, how are you? I lost my job last week.", "I lost my job last week."),
        ("Good morning. My mother died yesterday.", "My mother died yesterday."),
        ("I'm so grateful for your help, I feel better now.", "I feel better now."),
        ("Okay, thank you for the advice, I'll try it. Have a great day!", "I'll try it."),
        ("See you later, thanks again", ""),
        ("Goodbye, and thanks for everything.", ""),
        ("hey, i'm so stressed", "i'm so stressed"),
        ("I appreciate your help but I am still scared.", "But I am still scared."),
        ("Thank you!!! I feel much better now, bye bye", "I feel much better now"),
    ],
)
def test_strip_politeness_removes_thanks_greetings_goodbyes(text, expected):
    assert strip_politeness(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I need to take care of my kids and I have no time for myself.",  # "take care" + "of": not a goodbye
        "I didn't have a good day at all.",  # "have a good day" inside a clause: content
        "Thanks to my boss I lost my job.",  # "thanks to": not gratitude
        "How are you supposed to cope with that?",  # "how are you" followed by more words
        "They said hi to him and I cried.",  # "hi" inside a clause
        "This is hard. Okay. I feel sad.",  # no formula: text kept as is, fillers too
        "I feel so alone, nobody cares.",
    ],
)
def test_strip_politeness_keeps_content(text):
    assert strip_politeness(text) == text


def test_strip_politeness_rejects_non_text():
    with pytest.raises(TypeError, match="expects a str"):
        strip_politeness(None)  # type: ignore[arg-type]


def test_feature_config_skips_pure_politeness_turns():
    turns = [
        Turn("seeker", "I lost my job."),
        Turn("supporter", "I'm sorry."),
        Turn("seeker", "My wife is worried too."),
        Turn("supporter", "Say thanks!"),
        Turn("seeker", "Thank you so much, bye!"),
    ]
    plain = FeatureConfig(last_seeker_turns=2)
    strip = FeatureConfig(last_seeker_turns=2, strip_politeness=True)
    assert plain.texts(turns) == ["My wife is worried too. Thank you so much, bye!"]
    # the goodbye turn is gone entirely: the judge reads the last 2 turns WITH content
    assert strip.texts(turns) == ["I lost my job. My wife is worried too."]
    assert FeatureConfig(strip_politeness=True).texts([Turn("seeker", "Thanks!")]) == [""]
    with pytest.raises(ValueError, match="strip_politeness"):
        FeatureConfig(strip_politeness="yes")  # type: ignore[arg-type]
