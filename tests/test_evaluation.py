"""The evaluation harness: metric functions against hand-computed values, policies,
interactive runs on the stage env, reference-based evaluation, run files, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic_esconv import canonical_layout_sample

from esc_env.evaluation import metrics as M
from esc_env.evaluation.interactive import evaluate_policy, make_eval_envs, run_episodes, unbatch_info
from esc_cli.policy_specs import PolicySpecError, load_policy, policy_slug
from esc_env.evaluation.reference import (
    ESCONV_TO_AFLOW,
    WordNetUnavailable,
    evaluate_reference,
    map_strategy,
    reference_points,
    strategy_metrics,
    text_metrics,
)
from policies.baselines import FixedStrategyPolicy, RandomPolicy, dialogue_turns

REPO = Path(__file__).resolve().parents[1]
SAMPLE = canonical_layout_sample()
STAGE = "esc_env/ESCStage-v0"


# ----------------------------------------------------------------------------- metric functions
def test_mean_ci_is_the_t_interval():
    iv = M.mean_ci([1, 2, 3, 4, 5])
    # s = sqrt(2.5), t_{0.975, 4} = 2.776445, half = 2.776445 * 1.581139 / sqrt(5) = 1.963243
    assert iv.value == pytest.approx(3.0)
    assert iv.low == pytest.approx(3.0 - 1.963243, abs=1e-5)
    assert iv.high == pytest.approx(3.0 + 1.963243, abs=1e-5)
    assert iv.n == 5
    one = M.mean_ci([2.0])
    assert one.value == 2.0 and math.isnan(one.low) and math.isnan(one.high)
    with pytest.raises(ValueError):
        M.mean_ci([])


def test_proportion_ci_is_the_wilson_interval():
    iv = M.proportion_ci([True] * 8 + [False] * 2)
    assert iv.value == pytest.approx(0.8)
    assert iv.low == pytest.approx(0.49016, abs=1e-4)
    assert iv.high == pytest.approx(0.94332, abs=1e-4)
    zero = M.proportion_ci([False] * 5)  # the Wilson interval does not collapse at 0%
    assert zero.value == 0.0 and zero.low == 0.0 and zero.high == pytest.approx(0.43448, abs=1e-4)


def test_average_turns_counts_failures_as_the_turn_limit():
    at = M.average_turns([2, 5, 10, 3], [True, False, False, False], max_turns=10)
    assert at.tolist() == [2, 10, 10, 10]
    assert at.mean() == pytest.approx(8.0)
    with pytest.raises(ValueError):
        M.average_turns([11], [True], max_turns=10)


def test_macro_f1_and_accuracy_by_hand():
    y_true = ["a", "a", "b", "c"]
    y_pred = ["a", "b", "b", "b"]
    # a: tp 1, fp 0, fn 1 -> 2/3; b: tp 1, fp 2, fn 0 -> 1/2; c: tp 0, fn 1 -> 0
    assert M.macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert M.accuracy(y_true, y_pred) == pytest.approx(0.5)
    # a class given in labels but never seen scores 0 and lowers the mean
    assert M.macro_f1(y_true, y_pred, labels=["a", "b", "c", "d"]) == pytest.approx((2 / 3 + 1 / 2) / 4)
    assert M.macro_f1(["x", "y"], ["x", "y"]) == 1.0
    sklearn = pytest.importorskip("sklearn.metrics")
    assert M.macro_f1(y_true, y_pred) == pytest.approx(sklearn.f1_score(y_true, y_pred, average="macro"))


def test_distinct_n_by_hand():
    texts = ["a b a", "A b"]
    assert M.distinct_n(texts, 1) == pytest.approx(2 / 5)  # a b a a b
    assert M.distinct_n(texts, 2) == pytest.approx(2 / 3)  # (a b) (b a) (a b)
    assert M.distinct_n(["one"], 2) == 0.0
    with pytest.raises(ValueError):
        M.distinct_n(texts, 0)


def _ep(length, success, strategies, intensities, ret=0.0, gave_up=False):
    return {"length": length, "success": success, "gave_up": gave_up, "strategies": strategies,
            "intensities": intensities, "return": ret}


def test_episode_statistics_by_hand():
    eps = [
        _ep(2, True, ["Q", "A"], [4.0, 3.0, 2.0], ret=1.5),
        _ep(3, False, ["Q", "Q", "S"], [4.0, 4.5, 5.0, 5.0], ret=-1.0, gave_up=True),
    ]
    assert M.success_rate_by_turn(eps, 4) == [0.0, 0.5, 0.5, 0.5]
    assert M.strategy_transitions(eps) == {"Q": {"A": 1, "Q": 1, "S": 1}}
    dist = M.strategy_distribution(eps, ["Q", "A", "S", "X"])
    assert dist["Q"] == {"count": 3, "fraction": 0.6} and dist["X"]["count"] == 0
    usage = M.strategy_usage_by_turn(eps, 3, ["Q", "A", "S"])
    assert usage == {"Q": [2, 1, 0], "A": [0, 1, 0], "S": [0, 0, 1]}
    trace = M.intensity_by_turn(eps, 4)
    assert trace.tolist() == [[4.0, 3.0, 2.0, 2.0, 2.0], [4.0, 4.5, 5.0, 5.0, 5.0]]
    s = M.summarize_episodes(eps, max_turns=4, strategy_names=["Q", "A", "S"])
    assert s["success_rate"]["value"] == 0.5
    assert s["avg_turns"]["value"] == pytest.approx((2 + 4) / 2)
    assert s["intensity_change"]["value"] == pytest.approx((-2.0 + 1.0) / 2)
    assert s["give_up_rate"]["value"] == 0.5
    assert s["return"]["value"] == pytest.approx(0.25)
    assert s["rubric"] == {}
    eps[0]["rubric"] = [{"empathy": 4.0}, {"empathy": 2.0}]
    assert M.summarize_episodes(eps, 4)["rubric"]["empathy"]["value"] == pytest.approx(3.0)


# ----------------------------------------------------------------------------- policies
def test_baseline_policies():
    fixed = FixedStrategyPolicy("reflection OF feelings", "esconv")
    assert fixed.index == 2 and fixed.act({"dialogue": ""}) == 2
    assert FixedStrategyPolicy("3", "esconv").strategy == "Self-disclosure"
    with pytest.raises(KeyError, match="Hug"):
        FixedStrategyPolicy("Hug", "esconv")
    r1, r2 = RandomPolicy(8, seed=3), RandomPolicy(8, seed=3)
    a = r1.act_batch([{}] * 50)
    assert a == r2.act_batch([{}] * 50) and set(a) <= set(range(8)) and len(set(a)) > 4
    r1.reset(seed=3)
    assert r1.act_batch([{}] * 50) == a


def test_dialogue_turns_from_text_and_state():
    obs = {"dialogue": "Seeker: I lost my job.\nIt hurts.\nSupporter [Question]: What happened?\nSeeker: They let me go."}
    turns = dialogue_turns(obs)
    assert [t.speaker for t in turns] == ["seeker", "supporter", "seeker"]
    assert turns[0].text == "I lost my job.\nIt hurts." and turns[1].strategy == "Question"
    state = {"episode": {"turns": [{"speaker": "seeker", "text": "hi"}]}}
    assert dialogue_turns(obs, state)[0].text == "hi"


def test_load_policy_errors():
    with pytest.raises(PolicySpecError, match="unknown policy 'bogus'"):
        load_policy("bogus")
    with pytest.raises(PolicySpecError, match="Hug"):
        load_policy("fixed:Hug")
    with pytest.raises(FileNotFoundError, match="sb3 checkpoint not found"):
        load_policy("sb3:/no/such/model.zip")
    for kind in ("aflow", "rlff"):
        with pytest.raises(FileNotFoundError, match=f"{kind} checkpoint not found"):
            load_policy(f"{kind}:/no/such/dir")
    assert policy_slug("fixed:Affirmation and Reassurance") == "fixed-affirmation-and-reassurance"
    assert policy_slug("sb3:/x/ppo_model.zip") == "sb3-ppo_model"


# ----------------------------------------------------------------------------- interactive runs
def test_episodes_follow_their_seeds_whatever_the_batching():
    """Episode k is reset with seed S+k: one env or several side by side give the same records."""
    out = []
    for n in (1, 3):
        envs = make_eval_envs(STAGE, n, max_turns=6)
        out.append(run_episodes(FixedStrategyPolicy("Question"), envs, 7, seed=40, progress=False))
    a, b = out
    assert [e["reset_seed"] for e in a] == list(range(40, 47))
    for x, y in zip(a, b):
        assert x["persona_id"] == y["persona_id"]
        assert x["intensities"] == y["intensities"] and x["return"] == y["return"]
        assert x["episode"]["turns"] == y["episode"]["turns"]
    assert all(set(e["strategies"]) == {"Question"} for e in a)
    assert all(e["length"] == len(e["strategies"]) == len(e["intensities"]) - 1 for e in a)
    assert all(e["return"] == pytest.approx(sum(e["rewards"])) for e in a)


def test_evaluate_policy_on_the_stage_env():
    envs = make_eval_envs(STAGE, 4, max_turns=10)
    r = evaluate_policy(RandomPolicy(8, seed=0), envs, 60, seed=0, progress=False)
    m = r.metrics
    assert m["n_episodes"] == 60 and len(r.episodes) == 60
    succ = [e["success"] for e in r.episodes]
    assert m["success_rate"]["value"] == pytest.approx(np.mean(succ))
    assert m["success_rate"]["low"] <= m["success_rate"]["value"] <= m["success_rate"]["high"]
    assert m["avg_turns"]["value"] == pytest.approx(np.mean([e["length"] if e["success"] else 10 for e in r.episodes]))
    assert m["success_rate_by_turn"][-1] == pytest.approx(np.mean(succ))
    assert sum(d["count"] for d in m["strategy_distribution"].values()) == sum(e["length"] for e in r.episodes)
    assert sum(sum(v) for v in m["strategy_by_turn"].values()) == sum(e["length"] for e in r.episodes)


def test_unbatch_info_reads_gymnasium_vector_infos():
    infos = {"a": np.array([1, 2]), "_a": np.array([True, True]),
             "j": {"x": np.array([0.5, 0.0]), "_x": np.array([True, False])}, "_j": np.array([True, True])}
    assert unbatch_info(infos, 0) == {"a": 1, "j": {"x": 0.5}}
    assert unbatch_info(infos, 1) == {"a": 2, "j": {}}


def test_sb3_policy_round_trip(tmp_path):
    """A PPO model trained on EncodedObservation vectors acts through the sb3: spec."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from esc_env.wrappers import EncodedObservation, HashingEncoder

    env = EncodedObservation(gym.make(STAGE, max_turns=4), HashingEncoder(32), last_k_turns=2)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(32)
    path = tmp_path / "ppo.zip"
    model.save(path)
    with pytest.raises(PolicySpecError, match="shape"):  # no sidecar: the default encoder does not fit
        load_policy(f"sb3:{path}", strategies="esconv")
    (tmp_path / "ppo.json").write_text(json.dumps({"encoder": "hashing:32", "last_k_turns": 2}))
    envs = make_eval_envs(STAGE, 2, max_turns=4)
    policy = load_policy(f"sb3:{path}", strategies=envs.strategies, observation_space=envs.observation_space,
                         action_space=envs.action_space)
    eps = run_episodes(policy, envs, 3, seed=0, progress=False)
    # the harness's actions are the model's own greedy actions on the wrapped observations
    first = eps[0]
    wrapped = EncodedObservation(gym.make(STAGE, max_turns=4), HashingEncoder(32), last_k_turns=2)
    obs, _ = wrapped.reset(seed=0)
    assert envs.strategies.names[int(model.predict(obs, deterministic=True)[0])] == first["strategies"][0]


# ----------------------------------------------------------------------------- reference-based
def test_strategy_mapping_table():
    assert map_strategy("Question", "aflow") == "Clarification"
    assert map_strategy("reflection of feelings", "aflow") == "Emotional Validation"
    assert map_strategy("Others", "aflow") is None
    assert map_strategy("Others", "esconv") == "Others"
    assert map_strategy(None, "esconv") is None
    from agents.strategies import AFLOW, ESCONV

    assert set(ESCONV_TO_AFLOW) == set(ESCONV.names)
    assert {v for v in ESCONV_TO_AFLOW.values() if v} <= set(AFLOW.names)


def test_strategy_metrics_leave_out_unmapped_references():
    m = strategy_metrics(["A", None, "B", "A"], ["A", "A", "A", "A"], ["A", "B"])
    assert m["n"] == 3 and m["excluded"] == 1
    assert m["accuracy"] == pytest.approx(200 / 3)
    # A: tp 2, fp 1 -> 0.8; B: fn 1 -> 0
    assert m["macro_f1"] == pytest.approx(40.0)


def test_evaluate_reference_strategy_metrics_on_the_sample():
    pts = reference_points(str(SAMPLE), strategies="esconv")
    assert len(pts) == 4 and all(p.prefix and p.reference.speaker == "supporter" for p in pts)
    m, preds = evaluate_reference(FixedStrategyPolicy("Reflection of feelings"), pts, "esconv", generate=False, progress=False)
    refs = [p.reference_strategy for p in pts]
    assert m["strategy"]["accuracy"] == pytest.approx(100 * refs.count("Reflection of feelings") / 4)
    assert len(preds) == 4 and all(p["predicted_strategy"] == "Reflection of feelings" for p in preds)
    assert m["text"] is None and m["perplexity"]["perplexity"] is None
    pts_aflow = reference_points(str(SAMPLE), strategies="aflow", limit=2)
    assert len(pts_aflow) == 2
    assert [p.reference_strategy for p in pts_aflow] == [map_strategy(p.reference.strategy, "aflow") for p in pts_aflow]


def test_text_metrics():
    same = text_metrics(["i am so sorry to hear that you lost your job"] * 2, ["i am so sorry to hear that you lost your job"] * 2,
                        meteor=False)
    assert same["bleu2"] == pytest.approx(100) and same["bleu4"] == pytest.approx(100) and same["rougeL"] == pytest.approx(100)
    assert same["distinct1"] == pytest.approx(100 * 10 / 20) and same["meteor"] is None and same["meteor_note"]
    diff = text_metrics(["the weather is nice today"], ["i am so sorry to hear that"], meteor=False)
    assert diff["bleu2"] < 5 and diff["rougeL"] == 0.0


def test_meteor_matches_nltk_documented_value():
    """nltk's documented example (0.6944): METEOR runs offline on Debian's WordNet or nltk's data."""
    from esc_env.evaluation.reference import load_wordnet

    try:
        load_wordnet()
    except WordNetUnavailable as e:
        pytest.skip(str(e))
    hyp = "It is a guide to action which ensures that the military always obeys the commands of the party"
    ref = "It is a guide to action that ensures that the military will forever heed Party commands"
    assert text_metrics([hyp], [ref])["meteor"] == pytest.approx(69.44, abs=0.01)
    # synonyms count: WordNet is really used
    syn = text_metrics(["i bought an auto"], ["i bought a car"])["meteor"]
    unrelated = text_metrics(["i bought an apple"], ["i bought a car"])["meteor"]
    assert syn == pytest.approx(63.89, abs=0.01) and unrelated == pytest.approx(46.875)


# ----------------------------------------------------------------------------- run files
def test_run_files_tensorboard_and_plots(tmp_path):
    from esc_env.evaluation.plots import plot_all
    from esc_env.evaluation.runs import load_run, write_json, write_tensorboard

    envs = make_eval_envs(STAGE, 2, max_turns=5)
    runs = []
    for p in (RandomPolicy(8, seed=1), FixedStrategyPolicy("Question")):
        r = evaluate_policy(p, envs, 12, seed=0, progress=False)
        runs.append((p.name, r.metrics))
        write_json(tmp_path / p.name / "metrics.json", r.metrics)
        write_tensorboard(tmp_path / "tb" / p.name, r.metrics, r.episodes)
    back = load_run(tmp_path / "random")
    assert back["metrics"]["success_rate"] == runs[0][1]["success_rate"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "random"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"eval/success_rate", "eval/avg_turns", "episode/return", "by_turn/success_rate"} <= tags
    assert len(acc.Scalars("episode/return")) == 12
    assert acc.Scalars("eval/success_rate")[0].value == pytest.approx(runs[0][1]["success_rate"]["value"])

    import matplotlib.image as mpimg

    paths = plot_all(runs, tmp_path / "plots")
    assert [p.name for p in paths] == ["intensity.png", "strategy_usage.png", "success_by_turn.png"]
    for p in paths:
        img = mpimg.imread(p)
        assert img.shape[0] > 300 and img.shape[1] > 500
        assert img[..., :3].std() > 0.05  # not a blank canvas
