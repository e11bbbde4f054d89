"""RLFF-ESC: the simulator's future rewards, the reward model, GRPO and the policy.

The LLM parts use the session's embedded SmolLM2 with tiny token budgets.  Where a test
needs a known intensity, the env gets a *keyword judge*: a real judge object whose
``judge(dialogues)`` is a deterministic function of the dialogue text (no mocks).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agents.dialogue import Turn, format_dialogue
from policies.rlff.format import (
    FALLBACK_ANSWER,
    THINK_CLOSE,
    THINK_OPEN,
    build_messages,
    clean_answer,
    parse_dialogue_text,
    parse_reply,
    strip_reasoning,
)

SOOTHE, UPSET = "zqsoothe", "zqupset"


class KeywordJudge:
    """Intensity from the text: the most recent supporter turn containing a keyword decides
    (``zqsoothe`` -> 1, ``zqupset`` -> 5); without one, 3."""

    def judge(self, dialogues):
        out = []
        for turns in dialogues:
            value = 3.0
            for t in turns:
                if t.speaker == "supporter":
                    if SOOTHE in t.text:
                        value = 1.0
                    elif UPSET in t.text:
                        value = 5.0
            out.append(value)
        return np.asarray(out, dtype=np.float64)


def _persona():
    from agents.personas import Persona

    return Persona(id="test/job", emotion_type="sadness", problem_type="job crisis",
                   situation="I lost my job last week and I feel ashamed to tell my family.", initial_intensity=4)


def _seeker_params():
    from agents.seeker import DEFAULT_SEEKER_PARAMS

    return DEFAULT_SEEKER_PARAMS.replace(max_new_tokens=12)


def _supporter_params():
    from agents.supporter import DEFAULT_SUPPORTER_PARAMS

    return DEFAULT_SUPPORTER_PARAMS.replace(max_new_tokens=12)


PREFIX_TURNS = [
    Turn("seeker", "Hi. I lost my job last week."),
    Turn("supporter", "I'm sorry to hear that. How are you holding up?", "Question"),
    Turn("seeker", "Not well. I haven't told my family yet and I feel ashamed."),
]


@pytest.fixture(scope="module")
def text_env(backend):
    from esc_env.env import ESCEnv

    return ESCEnv(backend, personas=[_persona()], action_mode="text", max_turns=20, affect_judge=KeywordJudge(),
                  seeker_params=_seeker_params(), supporter_params=_supporter_params())


@pytest.fixture(scope="module")
def policy():
    from policies.rlff.policy import RLFFPolicy

    return RLFFPolicy("embedded", max_reasoning_tokens=12, max_answer_tokens=16, batch_size=8)


# ----------------------------------------------------------------------------- the format
def test_parse_reply_splits_reasoning_from_answer():
    r = parse_reply("They feel alone.</think>\nThat sounds hard.  I'm here.\n")
    assert r.reasoning == "They feel alone." and r.answer == "That sounds hard. I'm here."
    assert r.closed and r.well_formed
    # what the seeker would be shown differs from what was written: not clean (no format reward)
    labelled = parse_reply("They feel alone.</think>\nSupporter: That sounds hard. I'm here.")
    assert labelled.answer == "That sounds hard. I'm here." and not labelled.well_formed
    two = parse_reply("x</think> First part.\n\nSecond part.")
    assert two.answer == "First part." and not two.well_formed
    unclosed = parse_reply("They feel alone and I should")
    assert not unclosed.closed and unclosed.answer == "" and not unclosed.well_formed
    tagged = parse_reply("x</think> hi <think>more")
    assert tagged.closed and not tagged.well_formed and THINK_OPEN not in tagged.answer


def test_strip_reasoning_and_clean_answer():
    assert strip_reasoning(f"{THINK_OPEN}secret plan{THINK_CLOSE} Hello there") == "Hello there"
    assert "secret" not in strip_reasoning(f"a {THINK_OPEN}secret{THINK_CLOSE} b")
    assert clean_answer("Listener:  I hear you.\n\nSecond paragraph") == "I hear you."


def test_dialogue_text_round_trip():
    turns = PREFIX_TURNS + [Turn("supporter", "Line one\nline two")]
    back = parse_dialogue_text(format_dialogue(turns))
    assert [(t.speaker, t.text) for t in back] == [(t.speaker, t.text) for t in turns]


def test_build_messages_alternates_and_starts_with_user():
    msgs = build_messages([Turn("supporter", "Hi"), Turn("seeker", "hello")])
    assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user"
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user"]


# ----------------------------------------------------------------------------- simulator
def test_future_reward_sign_and_one_call_per_turn(text_env, backend):
    from policies.rlff.simulator import FutureSimulator, Prefix

    sim = FutureSimulator(text_env, horizon=1, rollouts=2, success_bonus=0.5, give_up_penalty=0.5, seed=3)
    prefix = Prefix("test@3", _persona(), list(PREFIX_TURNS), seed=11)
    states = sim.make_states([prefix])
    calls = backend.usage.calls
    out = sim.simulate(states, [[f"You are safe here {SOOTHE}.", f"That is your own fault {UPSET}."]], ["test@3"])
    # one seeker call for the candidates' turn; one supporter + one seeker call for the future turn
    assert backend.usage.calls - calls == 3
    assert sim.last_stats.transition_calls == 2 and sim.last_stats.transitions == 8
    good, bad = out[0]
    assert len(good) == len(bad) == 2
    for r in good:
        assert r.intensity_before == 3.0
        # the future supporter turn has no keyword: the candidate's effect stays (1.0)
        assert r.intensity_after == 1.0 and r.turns in (1, 2)
        assert math.isclose(r.reward, (3.0 - 1.0) / 4 + 0.5 * r.success - 0.5 * r.gave_up)
    for r in bad:
        assert r.intensity_after == 5.0
    assert np.mean([r.reward for r in good]) > 0 > np.mean([r.reward for r in bad])


def test_run_writes_records_and_resumes(text_env, backend, tmp_path):
    from policies.rlff.simulator import FutureSimulator, Prefix

    sim = FutureSimulator(text_env, horizon=0, rollouts=2, seed=0)
    prefixes = [Prefix(f"p{i}", _persona(), list(PREFIX_TURNS), seed=i) for i in range(2)]
    cands = {"p0": [f"a {SOOTHE}", "plain words"], "p1": [f"b {UPSET}"]}
    path = tmp_path / "futures.jsonl"
    recs = sim.run(prefixes[:1], path, candidates=cands, progress=False)
    assert [r["candidate"] for r in recs] == cands["p0"]
    assert recs[0]["mean"] == pytest.approx(0.5) and recs[1]["mean"] == pytest.approx(0.0)
    assert len(recs[0]["rewards"]) == 2 and recs[0]["horizon"] == 0
    calls = backend.usage.calls
    recs = sim.run(prefixes, path, candidates=cands, progress=False)  # p0 is skipped
    assert backend.usage.calls - calls == 1  # only p1's seeker turn (the judge is not an LLM)
    assert [r["prefix_id"] for r in recs] == ["p0", "p0", "p1"]
    assert recs[2]["mean"] == pytest.approx(-0.5)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["context"][-1]["speaker"] == "seeker" for x in lines)


def test_simulator_refuses_strategy_mode_and_short_envs(backend):
    from esc_env.env import ESCEnv
    from policies.rlff.simulator import FutureSimulator, Prefix

    with pytest.raises(ValueError, match="text"):
        FutureSimulator(ESCEnv(backend, personas=[_persona()], action_mode="strategy", affect_judge=KeywordJudge()))
    short = ESCEnv(backend, personas=[_persona()], action_mode="text", max_turns=2, affect_judge=KeywordJudge())
    sim = FutureSimulator(short, horizon=1)
    states = sim.make_states([Prefix("x", _persona(), list(PREFIX_TURNS))])
    with pytest.raises(ValueError, match="max_turns"):
        sim.simulate(states, [["hello"]])


# ----------------------------------------------------------------------------- reward model
WARM = ["That sounds really painful, I'm here with you.", "I'm so sorry, it makes sense you feel hurt.",
        "Thank you for telling me; that takes courage.", "It sounds like you have been carrying a lot alone.",
        "I hear how ashamed you feel, and you deserve kindness.", "That must be so hard. What has helped a little?"]
COLD = ["Just get over it.", "Stop complaining, everyone loses jobs.", "Whatever, that's life.",
        "You should have worked harder.", "I don't care much about that.", "That's your problem, not mine."]


def _records(n_prefixes: int = 12, seed: int = 0) -> list[dict]:
    """Simulator-shaped records: warm replies have higher future reward (with noise)."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n_prefixes):
        ctx = [Turn("seeker", f"Situation {i}: I lost my job and feel ashamed."),]
        for j, c in enumerate(list(rng.choice(WARM, 2, replace=False)) + list(rng.choice(COLD, 2, replace=False))):
            y = (0.4 if c in WARM else -0.4) + rng.normal(0, 0.1)
            recs.append({"prefix_id": f"p{i}", "context": [t.to_dict() for t in ctx], "candidate": str(c),
                         "mean": float(y), "rewards": [float(y)]})
    return recs


@pytest.mark.parametrize("head", ["classification", "regression", "ranking"])
def test_reward_model_learns_and_round_trips(head, tmp_path):
    from policies.rlff.reward_model import FutureRewardModel, TrainConfig

    recs = _records()
    # tie_margin 0.4: pairs of two warm (or two cold) replies differ only by noise and are not counted
    rm = FutureRewardModel("minilm", head=head, bins=2, hidden=32, tie_margin=0.4)
    m = rm.fit(recs, TrainConfig(epochs=40, eval_fraction=0.25, seed=0))
    assert m["train_loss_last"] < 0.5 * m["train_loss_first"]
    assert m["n_eval_prefixes"] == 3 and m["eval_n_pairs"] == 3 * 4
    assert m["eval_pair_accuracy"] >= 0.9
    if head == "classification":
        assert 0.0 <= m["eval_ece"] <= 1.0 and m["eval_bin_accuracy"] >= 0.75
    ctx = [[Turn("seeker", "I lost my job.")]] * 2
    s = rm.score(ctx, ["I'm so sorry, that sounds painful.", "Whatever, that's life."])
    assert s.shape == (2,) and s[0] > s[1]
    path = rm.save(tmp_path / "rm.safetensors")
    again = FutureRewardModel.load(path)
    assert np.allclose(again.score(ctx, ["I'm so sorry, that sounds painful.", "Whatever, that's life."]), s, atol=1e-6)
    assert again.reward_scale == pytest.approx(rm.reward_scale)


def test_cross_validation_compares_heads_on_the_same_pairs():
    from policies.rlff.reward_model import TrainConfig, cross_validate_heads

    cv = cross_validate_heads(_records(8), folds=4, train=TrainConfig(epochs=30), progress=False, hidden=32,
                              bins=2, tie_margin=0.4)
    assert cv["n_prefixes"] == 8 and cv["folds"] == 4
    n = {cv[h]["n_pairs"] for h in ("classification", "regression", "ranking")}
    assert n == {8 * 4}  # every prefix held out once: 4 warm-vs-cold pairs each
    for h in ("classification", "regression", "ranking"):
        assert cv[h]["pair_accuracy"] >= 0.9
    assert 0.0 <= cv["classification"]["ece"] <= 1.0 and cv["classification"]["bin_accuracy"] >= 0.9


def test_classification_bins_and_split_by_prefix():
    from policies.rlff.reward_model import FutureRewardModel, candidate_pairs, pair_accuracy, split_by_prefix

    tr, ev = split_by_prefix(["a", "a", "b", "b", "c", "c", "d", "d"], 0.25, seed=1)
    held = {p for p, e in zip("aabbccdd", ev) if e}
    assert len(held) == 1 and not any(p in held for p, t in zip("aabbccdd", tr) if t)
    rm = FutureRewardModel("minilm", bins=[0.0, 0.5])
    rm._fit_bins(np.array([-1.0, -0.2, 0.1, 0.3, 0.9]))
    assert list(rm.bin_of(np.array([-0.1, 0.0, 0.49, 0.5, 2.0]))) == [0, 1, 1, 2, 2]
    assert rm.bin_centers[1] == pytest.approx(0.2)
    y = np.array([1.0, 0.0, 0.5])
    assert len(candidate_pairs(["p", "p", "p"], y)) == 3
    assert pair_accuracy(np.array([3.0, 1.0, 2.0]), ["p"] * 3, y)[0] == 1.0
    assert pair_accuracy(np.array([1.0, 3.0, 2.0]), ["p"] * 3, y)[0] == 0.0


# ----------------------------------------------------------------------------- policy + GRPO
def test_generation_respects_format_and_masks_forced_tokens(policy):
    from policies.rlff.generation import generate_replies

    msgs = [build_messages(PREFIX_TURNS)]
    gen = generate_replies(policy.model, policy.tokenizer, msgs, num_samples=3, max_reasoning_tokens=8,
                           max_answer_tokens=12, temperature=1.0, seed=0)
    forced = policy.tokenizer(THINK_CLOSE, add_special_tokens=False)["input_ids"]
    assert len(gen.replies) == 3
    for ids, mask, reply in zip(gen.completion_ids, gen.sampled_mask, gen.replies):
        assert len(ids) == len(mask)
        text = policy.tokenizer.decode(ids)
        assert THINK_CLOSE in text  # every completion has the reasoning closed, forced or not
        assert THINK_OPEN not in reply.answer and THINK_CLOSE not in reply.answer
        if not reply.closed:
            assert mask.count(0) == len(forced)
        else:
            assert 0 not in mask


def test_format_warmup_then_merge_keeps_the_policy_and_round_trips(tmp_path):
    import torch

    from policies.rlff.format import warmup_reasoning
    from policies.rlff.grpo import WarmupExample, format_warmup
    from policies.rlff.policy import RLFFPolicy

    pol = RLFFPolicy("embedded", max_reasoning_tokens=8, max_answer_tokens=8)
    ex = [WarmupExample(list(PREFIX_TURNS), warmup_reasoning("shame", "job crisis", "Name the feeling you hear."),
                        "That sounds lonely and heavy. What worries you most about telling them?")]
    losses = format_warmup(pol, ex, steps=4, batch_size=1, learning_rate=2e-3, progress=False)
    assert len(losses) == 4 and losses[-1] < losses[0]
    ids = torch.tensor([pol.tokenizer("I feel so alone with this.")["input_ids"]])

    def logits(p):
        with torch.no_grad():
            return p.model(input_ids=ids).logits

    warmed = logits(pol)
    with torch.no_grad(), pol.model.disable_adapter():
        base = pol.model(input_ids=ids).logits
    assert not torch.allclose(warmed, base, atol=1e-4)
    pol.merge_adapter()  # the warm-up becomes the base; the fresh adapter is the identity
    assert torch.allclose(logits(pol), warmed, atol=1e-4)
    with torch.no_grad(), pol.model.disable_adapter():  # GRPO's reference is now the warmed-up policy
        assert torch.allclose(pol.model(input_ids=ids).logits, warmed, atol=1e-4)
    loaded = RLFFPolicy.load(pol.save(tmp_path / "warm"))
    assert len(loaded.merged) == 1 and torch.allclose(logits(loaded), warmed, atol=1e-4)


def test_grpo_step_changes_policy_and_checkpoint_resumes(policy, tmp_path):
    import torch

    from policies.rlff.grpo import GRPOConfig, RLFFTrainer
    from policies.rlff.reward_model import FutureRewardModel, TrainConfig

    rm = FutureRewardModel("minilm", head="regression", hidden=16)
    rm.fit(_records(6), TrainConfig(epochs=20, eval_fraction=0.0))
    cfg = GRPOConfig(total_steps=1, prompts_per_step=1, group_size=3, update_epochs=2, max_reasoning_tokens=8,
                     max_answer_tokens=12, learning_rate=1e-3, checkpoint_every=1, seed=0)
    before = {k: v.clone() for k, v in policy.adapter_state().items()}
    trainer = RLFFTrainer(policy, rm, [PREFIX_TURNS], cfg, out_dir=tmp_path / "run")
    history = trainer.train(progress=False)
    assert len(history) == 1 and trainer.step == 1
    m = history[0]
    assert all(math.isfinite(m[k]) for k in ("reward", "policy_loss", "kl", "grad_norm", "SPS"))
    assert m["grad_norm"] > 0
    after = policy.adapter_state()
    assert max(float((after[k] - before[k]).abs().max()) for k in before) > 0
    # the checkpoint restores the step and the adapter
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
    with torch.no_grad():
        for p in policy.model.parameters():
            if p.requires_grad:
                p.zero_()
    again = RLFFTrainer(policy, rm, [PREFIX_TURNS], cfg, out_dir=tmp_path / "run")
    assert again.load_checkpoint() and again.step == 1
    restored = policy.adapter_state()
    assert all(torch.equal(restored[k], after[k]) for k in after)
    assert len(again.optimizer.state) > 0
    assert again.train(progress=False) == []  # already at total_steps
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 1
    tb = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert tb


def test_grpo_resumed_run_matches_an_uninterrupted_one(policy, tmp_path):
    """Two GRPO steps in one go, and one step + a restart from the checkpoint + the second step,
    end with the same LoRA weights (sampling seeds depend only on (seed, step))."""
    import torch
    from peft import set_peft_model_state_dict

    from policies.rlff.grpo import GRPOConfig, RLFFTrainer
    from policies.rlff.reward_model import FutureRewardModel, TrainConfig

    rm = FutureRewardModel("minilm", head="regression", hidden=16)
    rm.fit(_records(6), TrainConfig(epochs=20, eval_fraction=0.0))
    start = policy.adapter_state()
    prompts = [PREFIX_TURNS, PREFIX_TURNS[:1]]

    def run(total_steps, out):
        cfg = GRPOConfig(total_steps=total_steps, prompts_per_step=1, group_size=2, max_reasoning_tokens=6,
                         max_answer_tokens=8, learning_rate=1e-3, checkpoint_every=1, seed=3)
        RLFFTrainer(policy, rm, prompts, cfg, out_dir=out).train(progress=False)
        return policy.adapter_state()

    try:
        straight = run(2, tmp_path / "straight")
        set_peft_model_state_dict(policy.model, start)
        run(1, tmp_path / "resumed")  # "crash" after the first step's checkpoint
        with torch.no_grad():
            for p in policy.model.parameters():
                if p.requires_grad:
                    p.add_(1.0)  # the restart must not depend on what is in memory
        resumed = run(2, tmp_path / "resumed")
        assert all(torch.allclose(straight[k], resumed[k], atol=1e-6) for k in straight)
        assert any(not torch.equal(straight[k], start[k]) for k in straight)
    finally:
        set_peft_model_state_dict(policy.model, start)


def test_reasoning_never_reaches_the_seeker(policy, text_env, tmp_path):
    from policies.rlff.policy import RLFFPolicy

    obs, _ = text_env.reset(seed=0)
    actions = policy.act_batch([obs, obs])
    assert len(actions) == 2 and len(policy.last_reasoning) == 2
    obs2, _, _, _, info = text_env.step(actions[0])
    # the utterance is exactly the parsed answer, and no tag reaches the dialogue
    assert info["supporter_utterance"] == actions[0].strip() == policy.last_replies[0].answer.strip()
    state = text_env.unwrapped.state
    for t in state.turns:
        assert THINK_OPEN not in t.text and THINK_CLOSE not in t.text
    # what the seeker LLM is prompted with holds no reasoning
    conv = text_env.unwrapped.engine.seeker.conversation(state.persona, state.turns[:-1])
    blob = "\n".join(m["content"] for m in conv)
    assert THINK_OPEN not in blob and THINK_CLOSE not in blob
    reasoning = policy.last_reasoning[0]
    if reasoning and reasoning not in actions[0] and reasoning not in obs["dialogue"]:
        assert reasoning not in blob and reasoning not in obs2["dialogue"]
    action, why = policy.act_with_reasoning(obs2)
    assert isinstance(action, str) and action and THINK_CLOSE not in action and isinstance(why, str)
    # save / load keeps the adapter
    folder = policy.save(tmp_path / "pol")
    loaded = RLFFPolicy.load(folder)
    a, b = policy.adapter_state(), loaded.adapter_state()
    assert all(np.allclose(a[k].numpy(), b[k].numpy()) for k in a)


def test_strategy_plus_text_actions(backend):
    from esc_env.env import ESCEnv
    from policies.rlff.policy import RLFFPolicy

    env = ESCEnv(backend, personas=[_persona()], action_mode="strategy+text", max_turns=2, affect_judge=KeywordJudge(),
                 seeker_params=_seeker_params())
    pol = RLFFPolicy("embedded", action_mode="strategy+text", max_reasoning_tokens=8, max_answer_tokens=12)
    obs, _ = env.reset(seed=1)
    action = pol.act(obs)
    assert set(action) == {"strategy", "utterance"} and env.action_space.contains(action)
    _, _, _, _, info = env.step(action)
    assert info["strategy"] == env.unwrapped.strategies[action["strategy"]].name
    assert THINK_CLOSE not in info["supporter_utterance"]
    assert pol.last_replies[0].answer == action["utterance"] or action["utterance"] == FALLBACK_ANSWER


def test_cli_evaluates_a_saved_rlff_policy_in_the_text_env(policy, tmp_path, capsys):
    """``esc-env evaluate --policy rlff:DIR`` loads the saved policy and runs it in ESCText-v0."""
    from esc_cli import main

    folder = policy.save(tmp_path / "pol")
    out = tmp_path / "eval"
    kwargs = json.dumps({"seeker_params": {"max_new_tokens": 8, "temperature": 0.0}, "affect_judge": "prompted"})
    rc = main(["evaluate", "--env-id", "esc_env/ESCText-v0", "--policy", f"rlff:{folder}", "--personas", "builtin",
               "--episodes", "2", "--max-turns", "1", "--num-envs", "2", "--env-kwargs", kwargs, "--out", str(out),
               "--no-progress"])
    assert rc == 0
    run = next(p for p in out.iterdir() if (p / "metrics.json").is_file())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_episodes"] == 2 and metrics["policy"] == f"rlff:{folder}"
    episodes = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 2
    for ep in episodes:
        for t in ep["episode"]["turns"]:
            assert THINK_OPEN not in t["text"] and THINK_CLOSE not in t["text"]
    assert "AffectJudge" in json.loads((run / "run.json").read_text())["affect_judge"]


# ----------------------------------------------------------------------------- the GRPO objective, by hand
def _objective_case():
    """Two rows of three tokens.  Row 0: A = +1, ratios 1.5 and 0.9, the third token masked
    with garbage log-probs (old -100, ref +100).  Row 1: A = -1, ratios 1.5, 0.5 and 1."""
    import torch

    logp = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, -3.0]], requires_grad=True)
    log_ratio = torch.tensor([[math.log(1.5), math.log(0.9), 0.0], [math.log(1.5), math.log(0.5), 0.0]])
    old = (logp - log_ratio).detach()
    old[0, 2] = -100.0  # padding: exp(0 - (-100)) would overflow to inf
    d = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, -math.log(2.0), 0.0]])  # log pi_ref - log pi_theta
    ref = (logp + d).detach()
    ref[0, 2] = 100.0
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    return logp, old, ref, adv, mask


def test_grpo_objective_hand_computed_without_kl():
    import torch

    from policies.rlff.grpo import grpo_objective

    logp, old, ref, adv, mask = _objective_case()
    t = grpo_objective(logp, old, ref, adv, mask, epsilon=0.2, beta=0.0)
    # row 0 (A=+1): min(1.5, 1.2) = 1.2 (clipped), min(0.9, 0.9) = 0.9 -> -(1.2 + 0.9) / 2
    # row 1 (A=-1): min(-1.5, -1.2) = -1.5, min(-0.5, -0.8) = -0.8 (clipped), -1 -> -(-3.3) / 3
    assert t.per_sequence.tolist() == pytest.approx([-1.05, 1.1], abs=1e-6)
    assert t.loss.item() == pytest.approx((-1.05 + 1.1) / 2, abs=1e-6)
    assert t.clipfrac == pytest.approx(3 / 5) and t.n_tokens == 5 and t.kl == 0.0
    # approx_kl = mean (rho - 1) - log rho over the 5 unmasked tokens
    ratios = [1.5, 0.9, 1.5, 0.5, 1.0]
    assert t.approx_kl == pytest.approx(np.mean([r - 1 - math.log(r) for r in ratios]), abs=1e-6)
    t.loss.backward()
    g = logp.grad
    # d loss / d logp = -(1/N)(1/|o_i|) A rho where the clip is inactive, 0 where it is active or masked
    expected = [[0.0, -0.9 / 4, 0.0], [1.5 / 6, 0.0, 1.0 / 6]]
    assert torch.allclose(g, torch.tensor(expected), atol=1e-6)
    assert torch.isfinite(g).all()


def test_grpo_objective_hand_computed_with_kl():
    from policies.rlff.grpo import grpo_objective

    logp, old, ref, adv, mask = _objective_case()
    beta = 0.1
    t = grpo_objective(logp, old, ref, adv, mask, epsilon=0.2, beta=beta)
    kl01 = 2.0 - math.log(2.0) - 1.0  # exp(d) - d - 1 at d = log 2
    kl11 = 0.5 + math.log(2.0) - 1.0  # at d = -log 2
    row0 = -((1.2 - 0.0) + (0.9 - beta * kl01)) / 2
    row1 = -((-1.5) + (-0.8 - beta * kl11) + (-1.0)) / 3
    assert t.per_sequence.tolist() == pytest.approx([row0, row1], abs=1e-6)
    assert t.kl == pytest.approx((kl01 + kl11) / 5, abs=1e-6)
    assert math.isfinite(t.loss.item())
    # epsilon = 0: every ratio != 1 is clipped
    t0 = grpo_objective(logp, old, ref, adv, mask, epsilon=0.0, beta=0.0)
    assert t0.per_sequence.tolist() == pytest.approx([-(1.0 + 0.9) / 2, -(-1.5 - 1.0 - 1.0) / 3], abs=1e-6)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_objective(logp, old, None, adv, mask, epsilon=0.2, beta=0.1)


def test_group_advantages_use_the_sample_std():
    from policies.rlff.grpo import GRPOConfig, group_advantages

    a = group_advantages(np.array([1.0, 0.0, 3.0, 3.0, 0.0, 1.0, 2.0, 9.0]), 4)
    # group 1: mean 1.75, std(ddof=1) = 1.5; group 2: mean 3, std(ddof=1) = sqrt(50 / 3)
    assert np.allclose(a[:4], (np.array([1.0, 0.0, 3.0, 3.0]) - 1.75) / (1.5 + 1e-4))
    assert np.allclose(a[4:], (np.array([0.0, 1.0, 2.0, 9.0]) - 3.0) / (math.sqrt(50 / 3) + 1e-4))
    assert np.allclose(group_advantages(np.array([2.0, 2.0]), 2), 0)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(np.array([1.0]), 1)
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)


def _sampled(policy, n=4, seed=0):
    from policies.rlff.generation import generate_replies

    return generate_replies(policy.model, policy.tokenizer, [build_messages(PREFIX_TURNS)], num_samples=n,
                            max_reasoning_tokens=6, max_answer_tokens=10, temperature=1.0, seed=seed)


def _sequence_logprobs(policy, gen):
    import torch

    from policies.rlff.generation import completion_logprobs

    with torch.no_grad():
        lp, _ = completion_logprobs(policy.model, gen.prompt_ids, gen.completion_ids, policy.tokenizer.pad_token_id)
    mask = torch.zeros_like(lp)
    for i, m in enumerate(gen.sampled_mask):
        mask[i, : len(m)] = torch.tensor(m, dtype=lp.dtype)
    return (lp * mask).sum(1).numpy()


@pytest.mark.slow
def test_one_grpo_update_moves_log_probs_with_the_advantages(policy, tmp_path):
    """After one update, each sampled reply's log-probability changes in the direction of its advantage."""
    import torch

    from policies.rlff.grpo import GRPOConfig, RLFFTrainer

    start = policy.adapter_state()
    try:
        gen = _sampled(policy, n=4, seed=5)
        adv = torch.tensor([1.5, 0.5, -0.5, -1.5])
        before = _sequence_logprobs(policy, gen)
        cfg = GRPOConfig(group_size=4, learning_rate=2e-3, kl_beta=0.0, max_grad_norm=1e9)
        trainer = RLFFTrainer(policy, None, [PREFIX_TURNS], cfg, out_dir=tmp_path)
        stats = trainer.update(gen, adv)
        delta = _sequence_logprobs(policy, gen) - before
        assert stats["approx_kl"] == 0.0 and stats["clipfrac"] == 0.0
        assert np.corrcoef(delta, adv.numpy())[0, 1] > 0.5
        assert delta[0] > 0 > delta[3]
    finally:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy.model, start)


@pytest.mark.slow
def test_ratio_is_one_before_any_update_with_lora_dropout(tmp_path):
    """With lora_dropout > 0 the first epoch's ratio is exactly 1 (old = the same forward pass)."""
    import torch

    from policies.rlff.generation import completion_logprobs
    from policies.rlff.grpo import GRPOConfig, RLFFTrainer
    from policies.rlff.policy import RLFFPolicy

    pol = RLFFPolicy("embedded", lora_dropout=0.5, max_reasoning_tokens=6, max_answer_tokens=8)
    torch.manual_seed(0)
    with torch.no_grad():  # a non-zero adapter, so that dropout on it changes the output
        for n, p in pol.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    gen = _sampled(pol, n=2, seed=1)
    pad = pol.tokenizer.pad_token_id
    with torch.no_grad():
        pol.model.eval()
        eval_lp, mask = completion_logprobs(pol.model, gen.prompt_ids, gen.completion_ids, pad)
        pol.model.train()
        train_lp, _ = completion_logprobs(pol.model, gen.prompt_ids, gen.completion_ids, pad)
        pol.model.eval()
    # the trap the old code fell into: eval-mode "old" log-probs differ from train-mode ones
    assert float(((eval_lp - train_lp).abs() * mask).max()) > 1e-3
    cfg = GRPOConfig(group_size=2, learning_rate=0.0, kl_beta=0.04, update_epochs=1)
    stats = RLFFTrainer(pol, None, [PREFIX_TURNS], cfg, out_dir=tmp_path).update(gen, torch.tensor([1.0, -1.0]))
    assert stats["approx_kl"] == 0.0 and stats["clipfrac"] == 0.0
    assert math.isfinite(stats["policy_loss"]) and math.isfinite(stats["kl"])


def test_trained_tokens_are_the_shown_answer(policy):
    """The answer tokens GRPO trains on decode to exactly the shown answer (up to whitespace)."""
    from policies.rlff.generation import shown_tokens

    tok = policy.tokenizer
    eos = tok.eos_token_id
    ids = tok("\nI hear you.\n\nSupporter: more", add_special_tokens=False)["input_ids"] + [eos]
    kept, ended = shown_tokens(tok, ids)
    assert ended and tok.decode(kept).strip() == "I hear you." and tok.decode(kept).endswith("\n\n")
    lead = tok("\n\nHello there", add_special_tokens=False)["input_ids"]
    assert shown_tokens(tok, lead) == (lead, False)  # cut by the budget: not ended
    assert shown_tokens(tok, lead + [eos]) == (lead + [eos], True)
    gen = _sampled(policy, n=6, seed=2)
    close = tok(THINK_CLOSE, add_special_tokens=False)["input_ids"]
    for ids, reply in zip(gen.completion_ids, gen.replies):
        text = tok.decode(ids, skip_special_tokens=True)
        raw = text[text.find(THINK_CLOSE) + len(THINK_CLOSE):]
        assert "\n\n" not in raw.strip()  # nothing after the first paragraph is kept
        if reply.answer_clean:
            assert " ".join(raw.split()) == reply.answer
    assert close  # the tokenizer knows the tag


# ----------------------------------------------------------------------------- common random numbers
def test_futures_of_a_prefix_share_seeds_and_ignore_batch_mates(text_env):
    """Every candidate of a prefix gets the same seed and future strategies at rollout m, and a
    prefix's seeds and strategies are the same alone and next to another prefix."""
    from policies.rlff.simulator import FutureSimulator, Prefix, future_reward_spread

    sim = FutureSimulator(text_env, horizon=1, rollouts=3, seed=4)
    a = Prefix("pa", _persona(), list(PREFIX_TURNS), seed=1)
    b = Prefix("pb", _persona(), list(PREFIX_TURNS[:1]), seed=2)
    cands = [f"You are safe {SOOTHE}.", f"Your fault {UPSET}."]
    alone = sim.simulate(sim.make_states([a]), [cands], ["pa"])[0]
    mixed = sim.simulate(sim.make_states([b, a]), [["Hello there."], cands], ["pb", "pa"])[1]
    fp = sim.future_policy
    strategies = set()
    for m in range(3):
        expected = [fp.strategy_of(sim.future_seed("pa", m, 0))]
        strategies.add(expected[0])
        for run in (alone, mixed):
            for j in range(2):
                r = run[j][m]
                assert r.seed == sim.row_seed("pa", m)
                assert r.future_strategies == expected[: len(r.future_strategies)]
        # the keyword judge reads only supporter turns: the candidate's effect is batch-independent
        assert [alone[j][m].intensity_after for j in (0, 1)] == [mixed[j][m].intensity_after for j in (0, 1)] == [1.0, 5.0]
    assert len({sim.row_seed("pa", m) for m in range(3)}) == 3  # rollouts differ from each other
    assert sim.row_seed("pa", 0) != sim.row_seed("pb", 0)
    # without common random numbers each candidate has its own seeds (the noise benchmark's control)
    irn = FutureSimulator(text_env, horizon=1, rollouts=3, seed=4, common_random_numbers=False)
    assert irn.row_seed("pa", 0, 0) != irn.row_seed("pa", 0, 1) and sim.row_seed("pa", 0, 0) == sim.row_seed("pa", 0, 1)
    recs = [sim.record(a, j, c, "given", alone[j]) for j, c in enumerate(cands)]
    spread = future_reward_spread(recs)
    assert spread["n_prefixes"] == 1 and spread["paired_difference_variance"]["n"] == 1


def test_future_reward_spread_by_hand():
    from policies.rlff.simulator import future_reward_spread

    recs = [{"prefix_id": "a", "rewards": [0.0, 1.0]}, {"prefix_id": "a", "rewards": [1.0, 1.0]},
            {"prefix_id": "b", "rewards": [0.5, 0.5]}, {"prefix_id": "b", "rewards": [0.0, 0.0]}]
    s = future_reward_spread(recs)
    # means a: 0.5, 1.0 -> var 0.125; b: 0.5, 0.0 -> 0.125
    assert s["within_prefix_variance"]["value"] == pytest.approx(0.125)
    # rollout variances 0.5, 0, 0, 0
    assert s["rollout_variance"]["value"] == pytest.approx(0.125) and s["rollout_variance"]["n"] == 4
    # paired differences: a: [-1, 0] -> 0.5; b: [0.5, 0.5] -> 0
    assert s["paired_difference_variance"]["value"] == pytest.approx(0.25)


# ----------------------------------------------------------------------------- held-out evaluation
class FixedPolicy:
    """A policy that always answers the same text (deterministic, like the keyword judge)."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def reply_batch(self, dialogues, seed=None):
        from policies.rlff.format import Reply

        return [Reply("", self.answer, True, True, True) for _ in dialogues]


@pytest.mark.slow
def test_heldout_judges_grade_policies_pairwise(text_env, backend):
    from agents.judges.rubric import RubricJudge
    from policies.rlff.evaluate import heldout_judge_comparison
    from policies.rlff.simulator import Prefix

    prefixes = [Prefix(f"h{i}", _persona(), list(PREFIX_TURNS), seed=i) for i in range(2)]
    pols = {"start": FixedPolicy(f"That is on you {UPSET}."), "rlff": FixedPolicy(f"I am here for you {SOOTHE}.")}
    out = heldout_judge_comparison(pols, prefixes, text_env, rubric_judge=RubricJudge(backend), rollouts=2, seed=0)
    assert out["start"]["intensity_change"]["value"] == pytest.approx(2.0)  # 3 -> 5
    assert out["rlff"]["intensity_change"]["value"] == pytest.approx(-2.0)  # 3 -> 1
    diff = out["rlff"]["diff_vs_start_affect_reward"]
    assert diff["n"] == 2 and diff["value"] >= 1.0 - 0.5 - 1e-9  # (+0.5) - (-0.5), up to bonus / penalty
    for name in pols:
        assert 1.0 <= out[name]["rubric"]["value"] <= 5.0 and out[name]["rubric"]["n"] == 2
        assert {"rubric_empathy", "rubric_naturalness"} <= set(out[name])
    assert "diff_vs_start_rubric" in out["rlff"] and "diff_vs_start_rubric" not in out["start"]
