"""Two invented dialogues in ESConv's canonical JSON layout, written to a temporary file.

ESConv is CC BY-NC and is never committed; the loaders are tested on these records instead.
Every text below was written for this project (none of it appears in ESConv).  The quirks
they exercise: two seeker turns in a row, feedback annotations, a survey without a final
rating, and extra top-level fields.

``canonical_layout_sample()`` writes them once per test session to
``<tmp>/canonical_layout_sample.json`` (the file name sets the persona ids,
``esconv:canonical_layout_sample/<i>``) and returns the path.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

FILE_NAME = "canonical_layout_sample.json"


def _turn(speaker: str, content: str, strategy: str | None = None, feedback: str | None = None) -> dict:
    annotation = {}
    if strategy is not None:
        annotation["strategy"] = strategy
    if feedback is not None:
        annotation["feedback"] = feedback
    return {"speaker": speaker, "annotation": annotation, "content": content}


def _record(experience: str, emotion: str, problem: str, situation: str, seeker_survey: dict,
            supporter_survey: dict, turns: list[dict], **extra: str) -> dict:
    return {"experience_type": experience, "emotion_type": emotion, "problem_type": problem, "situation": situation,
            "survey_score": {"seeker": seeker_survey, "supporter": supporter_survey}, "dialog": turns, **extra}


def records() -> list[dict]:
    """The two invented dialogues (fresh copies)."""
    return [
        _record(
            "Current Experience", "anxiety", "job crisis",
            "My team lead hinted that there will be layoffs and I am the newest hire.",
            {"initial_emotion_intensity": "4", "empathy": "5", "relevance": "4", "final_emotion_intensity": "2"},
            {"relevance": "5"},
            [
                _turn("supporter", "Hi there, what is on your mind today?", strategy="Question"),
                _turn("seeker", "hi"),
                _turn("seeker", "My boss hinted at layoffs and I joined only three months ago, so I think I am first in line."),
                _turn("supporter", "It sounds like you feel exposed because you are the newest person there.",
                      strategy="Reflection of feelings"),
                _turn("seeker", "Exactly. I moved to this city for the job and my lease runs for another year.", feedback="4"),
                _turn("supporter", "Could you ask your lead directly how the team is being evaluated?",
                      strategy="Providing Suggestions"),
                _turn("seeker", "That is scary but probably better than guessing. Thank you.", feedback="5"),
            ],
            seeker_question1="Helpful.", seeker_question2="", supporter_question1="", supporter_question2="",
        ),
        _record(
            "Previous Experience", "sadness", "breakup with partner",
            "We split up in the spring and I still check her profile every night.",
            {"initial_emotion_intensity": "3"},
            {},
            [
                _turn("seeker", "I broke up with my girlfriend of two years and I can't let it go."),
                _turn("supporter", "Two years together, and months later it still sits with you.",
                      strategy="Restatement or Paraphrasing"),
                _turn("seeker", "Yes. I still look at her photos every night before I sleep.", feedback="3"),
                _turn("supporter", "Missing someone that much shows how much you cared. It will get lighter.",
                      strategy="Affirmation and Reassurance"),
            ],
        ),
    ]


@functools.lru_cache(maxsize=1)
def canonical_layout_sample() -> Path:
    """Path of the sample file (written on first use, removed when the process ends)."""
    folder = Path(tempfile.mkdtemp(prefix="esc-env-synthetic-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / FILE_NAME
    path.write_text(json.dumps(records(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
