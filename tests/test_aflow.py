"""AFlow pieces that need no environment: the flow-balance loss, the other AFPO terms, the
selection rule, the backup, the tree file format, and the trainer on synthetic records."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from policies.aflow import (
    AFlowModel,
    AFlowPolicy,
    AFPOConfig,
    AFPOTrainer,
    ModelConfig,
    Node,
    Tree,
    backup,
    exploration_probability,
    extract_records,
    flow_balance_loss,
    flow_balance_residuals,
    group_paths,
    kl_to_reference,
    margin_loss,
    running_mean,
    selection_distribution,
    selection_scores,
)
from policies.aflow.afpo import PathData, afpo_losses, subpath_weights
from policies.aflow.mcts import MCTSConfig, normalise_prior, outcome_step_reward
from policies.aflow.trajectories import negative_action, preferred_action, read_records, write_records

N_STRAT = 4


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small models on a shared 2-core machine: extra threads only spin (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------
# flow balance
# --------------------------------------------------------------------------------------


def _balanced_paths(seed: int = 0, P: int = 5, T: int = 6, n: int = N_STRAT):
    """Random policies, actions and lengths, with flows built so that every edge balances."""
    g = torch.Generator().manual_seed(seed)
    log_pi = torch.log_softmax(torch.randn(P, T, n, generator=g), dim=-1)
    actions = torch.randint(0, n, (P, T - 1), generator=g)
    lengths = torch.randint(1, T, (P,), generator=g)
    taken = log_pi[:, :-1].gather(2, actions[..., None]).squeeze(2)
    log_flow = torch.empty(P, T)
    log_flow[:, 0] = torch.randn(P, generator=g) * 3
    for t in range(1, T):
        log_flow[:, t] = log_flow[:, t - 1] + taken[:, t - 1]
    # garbage past each path's end must not matter
    for p in range(P):
        log_flow[p, lengths[p] + 1:] = 100.0
    return log_flow, taken, lengths


def test_flow_balance_is_exactly_zero_when_policy_matches_flow_ratios():
    log_flow, taken, lengths = _balanced_paths()
    loss = flow_balance_loss(log_flow, taken, lengths, lam=0.9)
    assert float(loss) == pytest.approx(0.0, abs=1e-10)
    delta = flow_balance_residuals(log_flow, taken)
    for p in range(len(lengths)):
        L = int(lengths[p])
        for m in range(L + 1):
            for n in range(m + 1, L + 1):
                assert abs(float(delta[p, m, n])) < 1e-5


def test_flow_balance_is_positive_when_any_flow_is_off():
    log_flow, taken, lengths = _balanced_paths()
    p = int(torch.argmax(lengths))
    for t in range(int(lengths[p]) + 1):
        bad = log_flow.clone()
        bad[p, t] += 0.3
        assert float(flow_balance_loss(bad, taken, lengths)) > 1e-4
    bad_pi = taken.clone()
    bad_pi[p, 0] -= 0.5
    assert float(flow_balance_loss(log_flow, bad_pi, lengths)) > 1e-4


def test_flow_balance_sums_the_actions_inside_the_subpath_only():
    # one path s0 -a0-> s1 -a1-> s2: delta(0,1) = F0 + lp0 - F1; delta(0,2) = F0 + lp0 + lp1 - F2
    log_flow = torch.tensor([[1.0, 0.2, -0.5]])
    taken = torch.tensor([[-0.7, -1.1]])
    delta = flow_balance_residuals(log_flow, taken)[0]
    assert float(delta[0, 1]) == pytest.approx(1.0 - 0.7 - 0.2)
    assert float(delta[1, 2]) == pytest.approx(0.2 - 1.1 + 0.5)
    assert float(delta[0, 2]) == pytest.approx(1.0 - 0.7 - 1.1 + 0.5)
    lam = 0.5
    w = {(0, 1): lam, (1, 2): lam, (0, 2): lam**2}
    expected = sum(w[k] * float(delta[k]) ** 2 for k in w) / sum(w.values())
    assert float(flow_balance_loss(log_flow, taken, torch.tensor([2]), lam)) == pytest.approx(expected, rel=1e-6)


def test_subpath_weights_cover_exactly_the_pairs_inside_each_path():
    w = subpath_weights(torch.tensor([2, 0]), 4, 0.5)
    assert w.shape == (2, 4, 4)
    expect = torch.zeros(4, 4)
    expect[0, 1] = expect[1, 2] = 0.5
    expect[0, 2] = 0.25
    assert torch.allclose(w[0], expect)
    assert float(w[1].sum()) == 0.0


def test_margin_and_kl_terms():
    log_pi = torch.log(torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]))
    pref, neg = torch.tensor([0, 0]), torch.tensor([1, 2])
    # gap row 0 = log 7 = 1.95 >= 1 -> 0; row 1: gap 0 -> gamma
    assert float(margin_loss(log_pi, pref, neg, gamma=1.0)) == pytest.approx(0.5)
    assert float(margin_loss(log_pi, torch.tensor([-1, -1]), neg, 1.0)) == 0.0
    assert float(kl_to_reference(log_pi, log_pi)) == pytest.approx(0.0, abs=1e-7)
    ref = torch.log(torch.full((2, 4), 0.25))
    kl = float(kl_to_reference(log_pi, ref))
    expected = (0.7 * math.log(0.7 / 0.25) + 3 * 0.1 * math.log(0.1 / 0.25)) / 2
    assert kl == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------------------
# selection and backup
# --------------------------------------------------------------------------------------


def test_exploration_probability_formula():
    assert exploration_probability(0, 0.1) == pytest.approx(0.1)
    assert exploration_probability(9, 0.1) == pytest.approx(0.1 / (1 + math.log(10)))
    assert exploration_probability(100, 0.1) < exploration_probability(10, 0.1)


def test_selection_distribution_mixes_uniform_and_softmax():
    q = np.array([0.5, -0.2, 0.0, 1.0])
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    n_sa = np.array([3, 1, 0, 2])
    n_s = 6
    scores = selection_scores(q, prior, n_s, n_sa, lam=1.0, c=1.0)
    assert scores == pytest.approx(q + prior * math.sqrt(6) / (1 + n_sa))
    p = selection_distribution(q, prior, n_s, n_sa, kappa=0.1, lam=1.0, c=1.0)
    rho = 0.1 / (1 + math.log(7))
    soft = np.exp(scores - scores.max())
    soft /= soft.sum()
    assert p == pytest.approx(rho / 4 + (1 - rho) * soft)
    assert p.sum() == pytest.approx(1.0)
    # no exploration: plain softmax; c enters the denominator
    assert selection_distribution(q, prior, n_s, n_sa, kappa=0.0) == pytest.approx(soft)
    s2 = selection_scores(q, prior, n_s, n_sa, lam=1.0, c=3.0)
    assert s2[2] == pytest.approx(q[2] + prior[2] * math.sqrt(6) / 3.0)
    # a sharper temperature concentrates on the best score
    sharp = selection_distribution(q, prior, n_s, n_sa, kappa=0.0, temperature=0.01)
    assert int(np.argmax(sharp)) == int(np.argmax(scores)) and sharp.max() > 0.99


def test_running_mean_and_backup_along_a_path():
    assert running_mean(0.0, 1, 3.0) == 3.0
    assert running_mean(3.0, 2, 1.0) == 2.0
    root = Node(0, None, None, 0, {}, {})
    a = Node(1, 0, 2, 1, {}, {}, reward=0.5)
    b = Node(2, 1, 1, 2, {}, {}, reward=-0.25)
    backup([root, a, b], leaf_value=1.0)
    # G_b = 1, G_a = -0.25 + 1 = 0.75, G_root = 0.5 + 0.75 = 1.25
    assert (b.visits, b.value, b.q) == (1, 1.0, 0.75)
    assert (a.visits, a.value, a.q) == (1, 0.75, 1.25)
    assert (root.visits, root.value) == (1, 1.25)
    backup([root, a], leaf_value=-1.0)  # G_a = -1, G_root = 0.5 - 1 = -0.5
    assert a.visits == 2 and a.value == pytest.approx((0.75 - 1.0) / 2)
    assert a.q == pytest.approx((1.25 - 0.5) / 2)
    assert root.value == pytest.approx((1.25 - 0.5) / 2)
    assert b.visits == 1  # untouched
    # discounting
    r2, c2 = Node(0, None, None, 0, {}, {}), Node(1, 0, 0, 1, {}, {}, reward=1.0)
    backup([r2, c2], leaf_value=2.0, discount=0.5)
    assert c2.q == pytest.approx(1.0 + 0.5 * 2.0) and r2.value == pytest.approx(2.0)


def test_prior_normalisation_and_outcome_reward():
    p = normalise_prior(np.array([[2.0, 2.0, 0.0, np.nan], [0.0, 0.0, 0.0, 0.0]]), 2, 4)
    assert p[0] == pytest.approx([0.5, 0.5, 0.0, 0.0]) and p[1] == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError):
        normalise_prior(np.ones((2, 3)), 2, 4)
    from esc_env.core import Transition

    mid = Transition({}, {}, 0.7, False, False, {"success": False, "gave_up": False})
    win = Transition({}, {}, 0.7, True, False, {"success": True, "gave_up": False})
    lose = Transition({}, {}, -0.7, True, False, {"success": False, "gave_up": True})
    assert [outcome_step_reward(t) for t in (mid, win, lose)] == [0.0, 1.0, -1.0]


def test_mcts_config_validates_and_round_trips():
    cfg = MCTSConfig(n_simulations=5, c=2.0)
    assert MCTSConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        MCTSConfig(select="best")
    with pytest.raises(ValueError):
        MCTSConfig(n_simulations=0)
    with pytest.raises(ValueError):
        MCTSConfig.from_dict({"sims": 3})
    # random mode matches the MCTS transition budget by default
    assert MCTSConfig(n_simulations=10, max_depth=4, rollout_steps=1).n_random_paths() == 4
    assert MCTSConfig(n_simulations=10, max_depth=4).n_random_paths() == 10  # rollouts to the end: one path per simulation
    with pytest.raises(ValueError, match="rollout_steps"):
        MCTSConfig(rollout_steps=-1)
    with pytest.raises(ValueError, match="rubric_normalization"):
        MCTSConfig(rubric_normalization=0.0)


# --------------------------------------------------------------------------------------
# a synthetic tree (no env): strategy 1 is good, strategy 3 is bad
# --------------------------------------------------------------------------------------


def _obs(turn: int, last: int, text: str) -> dict:
    return {"dialogue": text, "turn": turn, "intensity": [4.0 - 0.5 * turn], "last_strategy": last}


def synthetic_tree(key: str = "t", depth: int = 3, seed: int = 0) -> Tree:
    """A full tree over actions {1, 3} to ``depth``: action 1 earns +1, action 3 earns -1."""
    rng = np.random.default_rng(seed)
    tree = Tree(key=key, persona_id="p", seed=seed, strategies=[f"s{i}" for i in range(N_STRAT)], config={"discount": 1.0})
    root = Node(0, None, None, 0, {"turns": [{"speaker": "seeker", "text": "hi"}]}, _obs(0, N_STRAT, "Seeker: hi"),
                prior=[0.25] * N_STRAT)
    tree.add(root)
    frontier = [root]
    for d in range(1, depth + 1):
        nxt = []
        for parent in frontier:
            for a in (1, 3):
                text = parent.observation["dialogue"] + f"\nSupporter: move {a}\nSeeker: {'better' if a == 1 else 'worse'} {rng.integers(5)}"
                node = Node(len(tree.nodes), parent.id, a, d, {"turns": parent.state["turns"] + [{"speaker": "supporter", "text": f"m{a}"}]},
                            _obs(d, a, text), reward=1.0 if a == 1 else -1.0, prior=[0.4, 0.3, 0.2, 0.1])
                node.truncated = d == depth
                node.leaf_value = 0.0 if node.done else None
                tree.add(node)
                nxt.append(node)
        frontier = nxt
    # back up every leaf once (exact returns)
    for leaf in tree.leaves():
        backup(tree.path_to(leaf.id), 0.0)
    tree.complete = True
    return tree


def test_tree_json_round_trip_and_atomic_save(tmp_path):
    tree = synthetic_tree()
    again = Tree.from_json(tree.to_json())
    assert again == tree
    path = tree.save(tmp_path / "trees" / "t.json")
    assert Tree.load(path) == tree
    assert sorted(os.listdir(tmp_path / "trees")) == ["t.json"]  # no temporary files left
    with pytest.raises(ValueError):
        Tree.from_dict({"format": "something-else"})


def test_records_from_a_tree():
    tree = synthetic_tree(depth=2)
    records = extract_records([tree])
    paths = group_paths(records)
    assert len(paths) == 4 and all(len(p) == 3 for p in paths)
    root_rec = paths[0][0]
    # Q(root,1) = mean(1+1, 1-1) = 1 > Q(root,3) = mean(-1+1, -1-1) = -1
    assert root_rec["preferred"] == 1
    assert root_rec["q_all"][1] == pytest.approx(1.0) and root_rec["q_all"][3] == pytest.approx(-1.0)
    assert root_rec["q_all"][0] is None and root_rec["visits_all"] == [0, 2, 0, 2]
    # uniform prior: the tie breaks toward the tried, low-Q strategy
    assert root_rec["negative"] == 3
    node1 = tree.nodes[tree.root.children[1]]
    assert preferred_action(tree, node1) == 1 and negative_action(tree, node1, 1) == 3  # prior 0.1 is lowest
    for p in paths:
        assert p[-1]["last"] and p[-1]["action"] is None
        assert [r["t"] for r in p] == [0, 1, 2]
        assert p[1]["cum_reward"] == pytest.approx(p[0]["reward"])


def test_records_jsonl_round_trip(tmp_path):
    records = extract_records([synthetic_tree(depth=2)])
    write_records(tmp_path / "r.jsonl", records)
    assert read_records(tmp_path / "r.jsonl") == records


# --------------------------------------------------------------------------------------
# model, trainer, policy
# --------------------------------------------------------------------------------------


def _model(**kw) -> AFlowModel:
    kw.setdefault("backbone", "hashing")
    kw.setdefault("hashing_dim", 64)
    kw.setdefault("hidden", 32)
    kw.setdefault("max_turns", 3)
    return AFlowModel(ModelConfig(n_strategies=N_STRAT, **kw))


def _records(n_trees: int = 6, depth: int = 3) -> list[dict]:
    return extract_records([synthetic_tree(f"t{i}", depth, seed=i) for i in range(n_trees)])


def test_gradients_reach_both_heads():
    model = _model()
    trainer = AFPOTrainer(model, _records(2), AFPOConfig(batch_paths=8), progress=False)
    batch = trainer.data.select(torch.arange(4))
    for term in ("flow_balance", "total"):
        model.zero_grad()
        trainer.losses(batch)[term].backward()
        for head in (model.policy_head, model.flow_head):
            g = sum(float(p.grad.abs().sum()) for p in head.parameters() if p.grad is not None)
            assert g > 0, f"{term}: no gradient in {head}"
        assert all(p.grad is None for p in model.ref_policy_head.parameters())


def test_trainer_learns_the_preferred_strategy_and_flows():
    torch.manual_seed(0)
    model = _model()
    cfg = AFPOConfig(epochs=60, batch_paths=8, lr=3e-3, flow_temperature=1.0)
    trainer = AFPOTrainer(model, _records(), cfg, progress=False)
    before = trainer.evaluate_records()
    trainer.train()
    after = trainer.evaluate_records()
    assert after["total"] < 0.5 * before["total"]
    assert after["strategy_accuracy"] == pytest.approx(1.0)
    assert after["flow_residual"] < before["flow_residual"]
    policy = AFlowPolicy(model, alpha=1.0)
    obs = trainer.data.observations[:5]
    assert set(policy.act_batch(obs).tolist()) == {1}


def test_no_flow_balance_ablation_leaves_the_term_out():
    model = _model()
    cfg = AFPOConfig(flow_weight=0.0)
    trainer = AFPOTrainer(model, _records(2), cfg, progress=False)
    t = trainer.losses(trainer.data)
    assert float(t["flow_balance"].detach()) > 0
    expect = cfg.anchor_weight * t["anchor"] + cfg.edge_weight * t["edge"] + cfg.margin_weight * t["margin"] + cfg.beta * t["kl"]
    assert float(t["total"].detach()) == pytest.approx(float(expect.detach()), rel=1e-6)


def test_training_resumes_to_the_same_weights(tmp_path):
    records = _records()
    cfg = AFPOConfig(total_steps=24, batch_paths=8, checkpoint_every=5, log_every=3)
    full = _model()
    AFPOTrainer(full, records, cfg, run_dir=tmp_path / "full", progress=False).train()

    part = _model()
    t1 = AFPOTrainer(part, records, cfg, run_dir=tmp_path / "part", progress=False)
    t1.train(stop_at=13)  # "crash" after update 13; the last checkpoint is update 13's stop save
    resumed_model = _model()  # a fresh process: new model, weights come from the checkpoint
    t2 = AFPOTrainer(resumed_model, records, cfg, run_dir=tmp_path / "part", progress=False)
    t2.train()
    assert t2.step == 24
    for (name, a), b in zip(full.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    ckpts = sorted(p.name for p in (tmp_path / "part" / "checkpoints").glob("step_*"))
    assert ckpts == ["step_00000020", "step_00000024"]  # keep_checkpoints=2
    assert any((tmp_path / "full" / "tb").iterdir())


def test_resuming_from_an_older_checkpoint_matches_too(tmp_path):
    records = _records()
    cfg = AFPOConfig(total_steps=12, batch_paths=8, checkpoint_every=4)
    full = _model()
    AFPOTrainer(full, records, cfg, run_dir=tmp_path / "a", progress=False).train()
    # stop at 10: the latest checkpoint is 10 (stop saves); remove it to resume from 8
    part = _model()
    AFPOTrainer(part, records, cfg, run_dir=tmp_path / "b", progress=False).train(stop_at=10)
    import json
    import shutil

    root = tmp_path / "b" / "checkpoints"
    shutil.rmtree(root / "step_00000010")
    (root / "latest.json").write_text(json.dumps({"step": 8, "dir": "step_00000008"}))
    resumed = _model()
    AFPOTrainer(resumed, records, cfg, run_dir=tmp_path / "b", progress=False).train()
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_policy_save_load_gives_the_same_scores(tmp_path):
    model = _model()
    AFPOTrainer(model, _records(2), AFPOConfig(total_steps=5, batch_paths=4), progress=False).train()
    policy = AFlowPolicy(model, alpha=0.5)
    policy.save(tmp_path / "pol")
    again = AFlowPolicy.load(tmp_path / "pol")
    obs = [_obs(1, 2, "Seeker: I feel bad\nSupporter: I hear you"), _obs(0, N_STRAT, "Seeker: hello")]
    assert again.alpha == 0.5
    assert np.allclose(policy.scores(obs), again.scores(obs))
    assert again.act(obs[0]) == policy.act(obs[0])
    assert sorted(os.listdir(tmp_path / "pol")) == ["model.safetensors", "policy.json"]


def test_policy_combines_log_pi_with_the_flow_look_ahead():
    model = _model()
    obs = [_obs(0, N_STRAT, "Seeker: hello")]
    with torch.no_grad():
        out = model(obs)
    for alpha in (0.0, 2.0):
        s = AFlowPolicy(model, alpha=alpha).scores(obs)
        expect = out.log_pi + alpha * (out.soft_q - out.soft_value[:, None])
        assert np.allclose(s, expect.numpy(), atol=1e-6)


def test_path_data_pads_and_indexes_states():
    records = _records(1, depth=2)
    data = PathData.from_records(records, N_STRAT)
    assert data.n_paths == 4
    assert data.state_idx.shape == (4, 3) and bool(data.state_mask.all())
    # the root is shared by all paths: one row in the state table
    assert len(set(data.state_idx[:, 0].tolist())) == 1
    assert len(data.observations) == 1 + 2 + 4


def test_preferences_need_at_least_min_tried_strategies():
    records = _records(1, depth=2)
    # pretend the search tried only strategy 1 at the root
    for r in records:
        if r["t"] == 0:
            r["visits_all"] = [0, 2, 0, 0]
    strict = PathData.from_records(records, N_STRAT, min_tried=2)
    loose = PathData.from_records(records, N_STRAT, min_tried=1)
    assert (strict.preferred[:, 0] == -1).all() and (strict.negative[:, 0] == -1).all()
    assert (loose.preferred[:, 0] == 1).all() and (loose.negative[:, 0] == 3).all()
    assert (strict.preferred[:, 1] >= 0).all()  # depth-1 nodes tried both strategies


def test_causal_lm_backbone_features_and_lora_gradients():
    """The embedded LM backbone: last real token's final hidden state, LoRA weights get gradients
    (with activation checkpointing on), and the adapters-off view is the frozen base model."""
    from policies.aflow.model import CausalLMEncoder, resolve_backbone_path

    enc = CausalLMEncoder(resolve_backbone_path("embedded"), lora=True, r=4, alpha=8, max_length=64)
    texts = ["Seeker: I feel sad.", "Seeker: I lost my job last week and I cannot sleep at night."]
    batch = enc.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        full = enc.model(**batch, output_hidden_states=True).hidden_states[-1]
    want = full[torch.arange(2), batch["attention_mask"].sum(1) - 1]
    enc.model.train()
    z = enc.encode(texts)
    assert z.shape == (2, enc.dim) and torch.allclose(z, want, atol=1e-4)
    z.pow(2).sum().backward()
    lora_grads = [p.grad for n, p in enc.model.named_parameters() if "lora_" in n and p.requires_grad]
    assert lora_grads and any(g is not None and g.abs().sum() > 0 for g in lora_grads)
    assert all(p.grad is None for n, p in enc.model.named_parameters() if "lora_" not in n)
    with torch.no_grad():
        for n, p in enc.model.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
        moved = enc.encode(texts)
        with enc.adapters_off():
            base = enc.encode(texts)
    assert not torch.allclose(moved, want, atol=1e-3) and torch.allclose(base, want, atol=1e-4)


# --------------------------------------------------------------------------------------
# afpo_losses on a tiny tree, by hand (tau != 1, discount != 1)
# --------------------------------------------------------------------------------------

TAU, GAMMA_D, LAM = 0.5, 0.8, 0.9


def _tiny_tree() -> Tree:
    """root -1-> A -3-> B (done) and root -2-> C (a leaf the search valued at V = 0.7)."""
    tree = Tree(key="tiny", persona_id="p", seed=0, strategies=[f"s{i}" for i in range(N_STRAT)], config={"discount": GAMMA_D})
    st = {"turns": [{"speaker": "seeker", "text": "hi"}]}
    tree.add(Node(0, None, None, 0, st, _obs(0, N_STRAT, "Seeker: hi"), prior=[0.4, 0.3, 0.2, 0.1], visits=3, value=0.2))
    tree.add(Node(1, 0, 1, 1, st, _obs(1, 1, "Seeker: a"), reward=0.6, prior=[0.25] * 4, visits=2, q=0.5, value=-0.1))
    tree.add(Node(2, 1, 3, 2, st, _obs(2, 3, "Seeker: b"), reward=-0.4, terminated=True, visits=1, q=-0.4, value=0.0))
    tree.add(Node(3, 0, 2, 1, st, _obs(1, 2, "Seeker: c"), reward=-0.2, prior=[0.25] * 4, visits=1, q=0.1, value=0.7))
    tree.complete = True
    return tree


# model outputs per node: log pi (4 strategies), h, g (4), log pi_ref
_LOGITS = {0: [0.3, 1.2, -0.5, 0.1], 1: [-0.7, 0.4, 0.9, 0.2], 2: [0.0, -0.3, 0.5, 1.1], 3: [1.0, 0.2, -0.2, -1.3]}
_H = {0: 1.3, 1: -0.6, 2: 0.25, 3: 0.9}
_G = {0: [0.2, 0.8, -0.4, 0.0], 1: [0.1, -0.2, 0.3, 1.4], 2: [0.0] * 4, 3: [0.5, 0.5, 0.5, 0.5]}
_REF = {k: [0.0, 0.5, -0.5, 0.2] for k in range(4)}


def _log_softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    z = math.log(sum(math.exp(x - m) for x in xs)) + m
    return [x - z for x in xs]


def test_afpo_losses_hand_computed():
    """Every AFPO term of a 2-path tree against the formulas written out by hand."""
    cfg = AFPOConfig(flow_temperature=TAU, subtb_lambda=LAM, anchor_weight=0.7, edge_weight=0.3, margin_weight=1.5,
                     beta=0.2, gamma=1.0)
    records = extract_records([_tiny_tree()])
    data = PathData.from_records(records, N_STRAT, min_tried=2)
    paths = [[r["node"] for r in p] for p in group_paths(records)]
    assert paths == [[0, 1, 2], [0, 3]]
    P, T = 2, 3

    def table(values, shape):
        out = torch.zeros(shape)
        for p, nodes in enumerate(paths):
            for t, node in enumerate(nodes):
                out[p, t] = torch.tensor(values(node))
        return out

    log_pi = table(lambda k: _log_softmax(_LOGITS[k]), (P, T, N_STRAT))
    ref = table(lambda k: _log_softmax(_REF[k]), (P, T, N_STRAT))
    h = table(lambda k: _H[k], (P, T))
    g = table(lambda k: _G[k], (P, T, N_STRAT))
    got = {k: float(v) for k, v in afpo_losses(log_pi, h, g, ref, data, cfg).items()}

    # by hand.  C: path 1 = 0, 0.6, 0.6 + 0.8 * (-0.4); path 2 = 0, -0.2
    lp = {k: _log_softmax(_LOGITS[k]) for k in _LOGITS}
    C = {0: 0.0, 1: 0.6, 2: 0.6 + GAMMA_D * -0.4, 3: -0.2}
    depth = {0: 0, 1: 1, 2: 2, 3: 1}
    logF = {k: C[k] / TAU + GAMMA_D ** depth[k] * _H[k] for k in C}
    # path 1: s0 -1-> s1 -3-> s2
    d01 = logF[0] + lp[0][1] - logF[1]
    d12 = logF[1] + lp[1][3] - logF[2]
    d02 = logF[0] + lp[0][1] + lp[1][3] - logF[2]
    fb1 = (LAM * d01**2 + LAM * d12**2 + LAM**2 * d02**2) / (LAM + LAM + LAM**2)
    fb2 = (logF[0] + lp[0][2] - logF[3]) ** 2  # one pair: its weight cancels
    fb = (fb1 + fb2) / 2
    # leaf anchor: h(B) -> 0 (done), h(C) -> 0.7 / tau
    anchor = ((_H[2] - 0.0 / TAU) ** 2 + (_H[3] - 0.7 / TAU) ** 2) / 2
    # soft-Q read-out on the 3 path edges: g(s, a) -> r / tau + gamma h(s')
    edge = ((_G[0][1] - (0.6 / TAU + GAMMA_D * _H[1])) ** 2 + (_G[1][3] - (-0.4 / TAU + GAMMA_D * _H[2])) ** 2
            + (_G[0][2] - (-0.2 / TAU + GAMMA_D * _H[3])) ** 2) / 3
    # margin: only the root tried >= 2 strategies; preferred 1 (Q 0.5 > 0.1), negative 3 (lowest prior); 2 rows
    margin = max(0.0, 1.0 - (lp[0][1] - lp[0][3]))
    # KL over the 5 real (path, step) states
    states = [0, 1, 2, 0, 3]
    kl = sum(sum(math.exp(a) * (a - b) for a, b in zip(lp[k], _log_softmax(_REF[k]))) for k in states) / len(states)
    total = fb + 0.7 * anchor + 0.3 * edge + 1.5 * margin + 0.2 * kl
    expected = {"flow_balance": fb, "anchor": anchor, "edge": edge, "margin": margin, "kl": kl, "total": total}
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
    step = [abs(d01), abs(d12), abs(logF[0] + lp[0][2] - logF[3])]
    assert got["flow_residual"] == pytest.approx(sum(step) / 3, rel=1e-5)
    # the record's path return uses gamma^L V(s_L)
    assert records[-1]["path_return"] == pytest.approx(-0.2 + GAMMA_D * 0.7)


def test_closed_form_flows_zero_balance_and_anchor_together():
    """A full binary tree (2 strategies, depth 2, tau 0.5, discount 0.9) whose optimal flows are
    known in closed form: training drives the balance and the leaf anchor to ~0 *together*, and
    the learned policy and soft values match the closed form."""
    tau, gamma = 0.5, 0.9
    tree = Tree(key="cf", persona_id="p", seed=0, strategies=["a", "b"], config={"discount": gamma})
    st = {"turns": [{"speaker": "seeker", "text": "x"}]}
    tree.add(Node(0, None, None, 0, st, {"dialogue": "Seeker: root", "turn": 0, "intensity": 4.0, "last_strategy": 2},
                  prior=[0.5, 0.5]))
    rewards = {(0, 0): 0.3, (0, 1): -0.1, (1, 0): 0.5, (1, 1): -0.4, (2, 0): 0.2, (2, 1): 0.6}
    leaf_value = {3: 0.0, 4: 0.4, 5: -0.3, 6: 0.0}
    for parent in (0, 1, 2):
        for a in (0, 1):
            nid = len(tree.nodes)
            depth = tree.nodes[parent].depth + 1
            done = depth == 2 and leaf_value[nid] == 0.0
            tree.add(Node(nid, parent, a, depth, st, {"dialogue": f"Seeker: node {nid} word{nid}", "turn": depth, "intensity": 3.0,
                                                      "last_strategy": a},
                          reward=rewards[(parent, a)], terminated=done, prior=[0.5, 0.5],
                          value=leaf_value.get(nid, 0.0), visits=1, q=0.0))
    tree.complete = True
    # closed form: h(leaf) = V/tau; h(s_t) = gamma^-t logsumexp_a gamma^t (r_a/tau + gamma h(s'_a))
    h = {k: v / tau for k, v in leaf_value.items()}
    pi = {}
    for node, t in ((1, 1), (2, 1), (0, 0)):
        kids = tree.nodes[node].children
        x = [gamma**t * (rewards[(node, a)] / tau + gamma * h[kids[a]]) for a in (0, 1)]
        z = math.log(sum(math.exp(v) for v in x))
        h[node] = z / gamma**t
        pi[node] = [math.exp(v - z) for v in x]
    records = extract_records([tree])
    model = AFlowModel(ModelConfig(n_strategies=2, backbone="hashing", hashing_dim=64, hidden=64, max_turns=3))
    cfg = AFPOConfig(flow_temperature=tau, margin_weight=0.0, beta=0.0, total_steps=1500, batch_paths=4, lr=3e-3,
                     min_tried=1)
    trainer = AFPOTrainer(model, records, cfg, progress=False)
    trainer.train()
    end = trainer.evaluate_records()
    assert end["flow_balance"] < 1e-3 and end["anchor"] < 1e-3 and end["edge"] < 1e-3, end
    with torch.no_grad():
        out = model([tree.nodes[k].observation for k in (0, 1, 2)])
    for i, node in enumerate((0, 1, 2)):
        assert out.log_pi[i].exp().tolist() == pytest.approx(pi[node], abs=0.02)
        assert float(out.soft_value[i]) == pytest.approx(h[node], abs=0.05)


# --------------------------------------------------------------------------------------
# the search's values: give-ups, depth, rubric scale
# --------------------------------------------------------------------------------------


class _FlatEnv:
    """A test env with 8 *identical* strategies: every step earns 1.5 (plus seeded noise),
    the episode lasts ``horizon`` steps.  Implements the state API that the search uses."""

    def __init__(self, horizon: int = 6, noise: float = 0.0) -> None:
        from types import SimpleNamespace

        self.strategies = SimpleNamespace(names=[f"s{i}" for i in range(8)])
        self.horizon, self.noise = horizon, noise
        self._state: dict = {}

    @staticmethod
    def _obs(state: dict) -> dict:
        return {"dialogue": " ".join(map(str, state["actions"])), "turn": len(state["actions"]), "intensity": 3.0,
                "last_strategy": state["actions"][-1] if state["actions"] else 8}

    def reset(self, seed=None, options=None):
        self._state = {"turns": [], "actions": [], "seed": int(seed or 0)}
        return self._obs(self._state), {}

    def get_state(self) -> dict:
        return {"turns": [], "actions": list(self._state["actions"]), "seed": self._state["seed"]}

    def transition(self, states, actions):
        from esc_env.core import Transition

        out = []
        for s, a in zip(states, actions):
            acts = list(s["actions"]) + [int(a)]
            r = 1.5
            if self.noise:
                r += self.noise * float(np.random.default_rng([s["seed"], *acts]).standard_normal())
            nxt = {"turns": [], "actions": acts, "seed": s["seed"]}
            end = len(acts) >= self.horizon
            out.append(Transition(nxt, self._obs(nxt), r, False, end, {"success": False, "gave_up": False}))
        return out


def test_identical_strategies_get_equal_q():
    """Fault 2: the backup summed rewards over walks of different depths, so with 8 identical
    strategies the root children got Q = 12.4, 4.9, 3.0.  Rolling out to the episode's end,
    every Q is the whole-episode return 1.5 * horizon."""
    from policies.aflow import search_one_tree

    env = _FlatEnv(horizon=6)
    cfg = MCTSConfig(n_simulations=60, max_depth=6, temperature=10.0)  # a flat softmax: many children tried
    tree = search_one_tree(env, cfg, None, 0)
    kids = [tree.nodes[c] for c in tree.root.children.values()]
    assert len(kids) >= 3 and len({k.visits for k in kids}) > 1  # explored unevenly ...
    for k in kids:
        assert k.q == pytest.approx(1.5 * 6, abs=1e-9)  # ... and valued equally
    for node in tree.nodes:
        assert node.value == pytest.approx(1.5 * (6 - node.depth), abs=1e-9)
    # discounted: V(s) = 1.5 * sum_{k < 6 - depth} 0.5^k, through the tree path and the rollout alike
    disc = search_one_tree(env, cfg.replace(discount=0.5), None, 0)
    for node in disc.nodes:
        assert node.value == pytest.approx(1.5 * (1 - 0.5 ** (6 - node.depth)) / 0.5, abs=1e-9)
    # the paper's one-step rollout brings the depth bias back (why the default rolls out to the end)
    short = search_one_tree(env, cfg.replace(rollout_steps=1), None, 0)
    qs = [short.nodes[c].q for c in short.root.children.values()]
    assert max(qs) - min(qs) > 0.5
    # with noisy steps (sd 0.3 each) the Q of a child with n visits is within noise of 9
    noisy = search_one_tree(_FlatEnv(horizon=6, noise=0.3), cfg, None, 0)
    for c in noisy.root.children.values():
        k = noisy.nodes[c]
        assert abs(k.q - 9.0) < 4 * 0.3 * math.sqrt(6) / math.sqrt(k.visits)


def test_a_give_up_keeps_its_reward_unless_the_reward_is_the_rubric():
    """Fault 1: a give-up step was valued 0 whatever its reward's sign."""
    from esc_env.core import Transition
    from policies.aflow import BatchedMCTS

    give_up = Transition({}, {}, -1.125, True, False, {"success": False, "gave_up": True,
                                                       "judges": {"rubric": {"empathy": 4, "information": 3, "naturalness": 5,
                                                                             "strategic_fit": 2}}})
    bad_step = Transition({}, {}, -0.375, False, False, {"success": False, "gave_up": False,
                                                          "judges": {"rubric": {"empathy": 2, "information": 2, "naturalness": 2,
                                                                                "strategic_fit": 2}}})
    env = _FlatEnv()
    assert BatchedMCTS(env, MCTSConfig(reward="env")).step_value(give_up) == -1.125
    assert BatchedMCTS(env, MCTSConfig(reward="env")).step_value(give_up) < BatchedMCTS(env, MCTSConfig(reward="env")).step_value(bad_step)
    assert BatchedMCTS(env, MCTSConfig(reward="outcome")).step_value(give_up) == -1.0
    rubric = BatchedMCTS(env, MCTSConfig(reward="rubric", giveup_value=0.0))
    assert rubric.step_value(give_up) == 0.0
    # fault 5: the rubric is on the authors' scale, divided by reward_normalization 2.5
    assert rubric.step_value(bad_step) == pytest.approx((0.1 * 2 + 0.1 * 2 + 0.1 * 2 + 0.2 * 2) / 2.5)
    assert BatchedMCTS(env, MCTSConfig(reward="rubric", rubric_normalization=1.0)).step_value(bad_step) == pytest.approx(1.0)


def test_backup_signs_and_discount_by_hand():
    root = Node(0, None, None, 0, {}, {})
    a = Node(1, 0, 0, 1, {}, {}, reward=0.5)
    b = Node(2, 1, 0, 2, {}, {}, reward=-2.0)
    backup([root, a, b], leaf_value=3.0, discount=0.5)
    # G_b = 3; G_a = -2 + 0.5 * 3 = -0.5; G_root = 0.5 + 0.5 * (-0.5) = 0.25
    assert (b.value, b.q, a.value, a.q, root.value) == pytest.approx((3.0, -0.5, -0.5, 0.25, 0.25))
