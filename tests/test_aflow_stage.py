"""AFlow on esc_env/ESCStage-v0 (no LLM): snapshots, lockstep search, resuming, ablations,
and a small search -> train -> evaluate run that must beat the random policy."""

from __future__ import annotations

import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import esc_env  # noqa: F401  (registers the environments)
from policies.aflow import (
    AFlowModel,
    AFlowPolicy,
    AFPOConfig,
    AFPOTrainer,
    BatchedMCTS,
    MCTSConfig,
    ModelConfig,
    Tree,
    extract_records,
    random_policy,
    run_policy,
    search_one_tree,
)
from policies.aflow.evaluate import stage_optimum

PERSONAS = ["stage/job-loss", "stage/breakup", "stage/exams", "stage/friends"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def env():
    return gym.make("esc_env/ESCStage-v0", strategies="aflow")


def _episode(state: dict) -> dict:
    """The episode part of a state (``get_state`` wraps it with the env's reset RNG)."""
    return state["episode"] if "episode" in state else state


def test_a_restored_snapshot_expands_to_the_same_child(env):
    core = env.unwrapped
    env.reset(seed=5, options={"persona_id": "stage/breakup"})
    env.step(1)
    snap = core.get_state()
    first = core.transition([snap], [3])[0]
    # a second env restored from the JSON of the snapshot
    other = gym.make("esc_env/ESCStage-v0", strategies="aflow")
    other.reset(seed=123)
    other.unwrapped.set_state(json.loads(json.dumps(snap)))
    obs, reward, term, trunc, info = other.step(3)
    assert _episode(other.unwrapped.get_state()) == _episode(first.state)
    assert reward == first.reward and obs["dialogue"] == first.observation["dialogue"]
    # and the original env is untouched by transition()
    assert core.get_state() == snap


def test_a_saved_tree_re_expands_to_its_stored_children(env, tmp_path):
    cfg = MCTSConfig(n_simulations=8, max_depth=4)
    tree = search_one_tree(env, cfg, "stage/friends", 11)
    tree.save(tmp_path / "t.json")
    loaded = Tree.load(tmp_path / "t.json")
    core = env.unwrapped
    children = [n for n in loaded.nodes if n.parent is not None]
    assert children
    redo = core.transition([loaded.nodes[n.parent].state for n in children], [n.action for n in children])
    for n, t in zip(children, redo):
        assert json.loads(json.dumps(t.state)) == n.state
        assert t.reward == n.env_reward == n.reward  # reward="env"


def test_search_tree_invariants(env):
    cfg = MCTSConfig(n_simulations=12, max_depth=3, temperature=0.2)
    tree = search_one_tree(env, cfg, "stage/exams", 3)
    assert tree.complete and tree.root.visits == cfg.n_simulations
    assert len(tree.nodes) <= 1 + cfg.n_simulations
    for node in tree.nodes:
        assert node.depth <= cfg.max_depth
        if node.children:
            assert node.visits >= sum(tree.nodes[c].visits for c in node.children.values())
            # V(s) is the visit-weighted mean of the edge values, plus the leaf evaluation(s)
        if node.parent is not None:
            assert node.prior is None or len(node.prior) == 8
            assert node.leaf_value is not None
            assert node.q == pytest.approx(node.reward + node.value)  # deterministic edge: Q = r + V(child)
        if node.done:
            assert not node.children and node.leaf_value == 0.0


def test_batched_lockstep_search_equals_one_tree_at_a_time(env):
    cfg = MCTSConfig(n_simulations=10, max_depth=10, trees_per_batch=8)
    starts = [(p, s) for s in (0, 1) for p in PERSONAS]
    mcts = BatchedMCTS(env, cfg)
    batched = mcts.run(starts)
    # one transition call per round for all 8 trees, plus one per rollout step (rollouts run to
    # the end: at most 9 more steps after the expansion in a 10-turn episode)
    assert mcts.stats.transition_calls <= cfg.n_simulations * 10
    assert mcts.stats.transitions > 4 * mcts.stats.transition_calls
    for (p, s), tree in zip(starts, batched):
        single = search_one_tree(env, cfg, p, s)
        assert single.to_json() == tree.to_json()


class _StopAfter:
    """A uniform prior that raises (a simulated crash) once ``limit`` tree files exist."""

    def __init__(self, folder, limit: int | None) -> None:
        self.folder, self.limit = folder, limit

    def __call__(self, states, observations):
        if self.limit is not None and len(list(self.folder.glob("*.json"))) >= self.limit:
            raise KeyboardInterrupt("simulated crash")
        return np.full((len(states), 8), 1.0 / 8)


def test_an_interrupted_search_resumes_to_the_same_trees(env, tmp_path):
    cfg = MCTSConfig(n_simulations=6, max_depth=5, trees_per_batch=2)
    starts = [(p, 7) for p in PERSONAS] + [("stage/breakup", 8)]
    full = BatchedMCTS(env, cfg, prior=_StopAfter(tmp_path / "full", None)).run(starts, tmp_path / "full")

    crash_dir = tmp_path / "crash"
    with pytest.raises(KeyboardInterrupt):
        BatchedMCTS(env, cfg, prior=_StopAfter(crash_dir, 2)).run(starts, crash_dir)
    assert len(list(crash_dir.glob("*.json"))) == 2  # the first chunk finished and was saved
    assert not [f for f in os.listdir(crash_dir) if f.endswith(".tmp")]
    again = BatchedMCTS(env, cfg, prior=_StopAfter(crash_dir, None))
    resumed = again.run(starts, crash_dir)
    assert again.stats.nodes > 0 and again.stats.rounds == 2 * cfg.n_simulations  # only the 3 missing trees (2 chunks)
    assert [t.to_json() for t in resumed] == [t.to_json() for t in full]
    for name in os.listdir(tmp_path / "full"):
        assert (tmp_path / "full" / name).read_text() == (crash_dir / name).read_text()
    # a folder searched with other settings is refused
    with pytest.raises(ValueError, match="another MCTSConfig"):
        BatchedMCTS(env, cfg.replace(n_simulations=7), prior=_StopAfter(crash_dir, None)).run(starts, crash_dir)


def test_random_trajectory_ablation_walks_complete_random_paths(env):
    cfg = MCTSConfig(n_simulations=10, max_depth=4, mode="random", random_paths=3)
    tree = search_one_tree(env, cfg, "stage/job-loss", 2)
    assert tree.root.visits == 3
    for leaf in tree.leaves():
        assert leaf.done or leaf.depth == cfg.max_depth  # every path runs to the end or the depth limit
    assert len(list(tree.paths())) <= 3


def test_outcome_only_rewards_are_zero_before_the_end(env):
    cfg = MCTSConfig(n_simulations=15, max_depth=10, reward="outcome", temperature=0.2)
    tree = search_one_tree(env, cfg, "stage/breakup", 4)
    for node in tree.nodes[1:]:
        if not node.done:
            assert node.reward == 0.0
        else:
            assert node.reward == (1.0 if node.success else -1.0 if node.gave_up else 0.0)


def test_llm_prior_needs_an_llm_env(env):
    with pytest.raises(ValueError, match="prior='llm'"):
        BatchedMCTS(env, MCTSConfig(prior="llm"))


def test_rubric_reward_needs_rubric_scores(env):
    mcts = BatchedMCTS(env, MCTSConfig(n_simulations=2, reward="rubric"))
    with pytest.raises(ValueError, match="rubric"):
        mcts.search([mcts.new_tree("stage/exams", 0)])


def test_tiny_search_train_beats_random(env, tmp_path):
    cfg = MCTSConfig(n_simulations=40, max_depth=10, temperature=0.1, lam=0.1, trees_per_batch=64)
    trees = BatchedMCTS(env, cfg).run([(None, 1_000_000 + s) for s in range(64)], tmp_path / "trees")
    records = extract_records(trees)
    model = AFlowModel(ModelConfig(n_strategies=8, backbone="hashing", hashing_dim=256, hidden=64))
    AFPOTrainer(model, records, AFPOConfig(epochs=8, batch_paths=64), run_dir=tmp_path / "run", progress=False).train()
    policy = AFlowPolicy(model, alpha=1.0)
    aflow = run_policy(env, policy.act, 100, seed=0)
    rand = run_policy(env, random_policy(8, seed=1), 100, seed=0)
    _, optimum = stage_optimum(env)
    assert optimum is not None and aflow.mean <= optimum + 3 * aflow.ci95
    assert aflow.mean > rand.mean + max(aflow.ci95, rand.ci95), (aflow.as_dict(), rand.as_dict())


def _load_example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "train_aflow.py"
    spec = importlib.util.spec_from_file_location("train_aflow_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_script_runs_and_resumes(tmp_path):
    example = _load_example()
    argv = ["--env-id", "esc_env/ESCStage-v0", "--run-dir", str(tmp_path / "run"), "--n-trees", "6", "--simulations", "4",
            "--trees-per-batch", "4", "--epochs", "2", "--batch-paths", "8", "--hashing-dim", "64", "--hidden", "16",
            "--eval-episodes", "5", "--ablations", "none,no-mcts", "--progress", "0", "--torch-threads", "1"]
    out = example.main(argv)
    assert set(out["variants"]) == {"none", "no-mcts"}
    assert out["random"]["episodes"] == 5 and out["optimal"]["exact_expected_return"] > 1.0
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["variants"]["none"]["eval"]["mean_return"] == out["variants"]["none"]["eval"]["mean_return"]
    assert len(list((tmp_path / "run" / "trees").glob("mcts-*/*.json"))) == 6
    assert (tmp_path / "run" / "none" / "policy" / "policy.json").is_file()
    # a rerun finds the trees and the finished training, and evaluates the same policy
    again = example.main(argv)
    assert again["variants"]["none"]["search"]["nodes"] == 0
    assert again["variants"]["none"]["eval"]["mean_return"] == out["variants"]["none"]["eval"]["mean_return"]
    # the saved policy loads by name on the command line: esc-env evaluate --policy aflow:DIR
    from esc_cli import main as cli

    policy_dir = tmp_path / "run" / "none" / "policy"
    rc = cli(["evaluate", "--env-id", "esc_env/ESCStage-v0", "--strategies", "aflow", "--policy", f"aflow:{policy_dir}",
              "--episodes", "6", "--num-envs", "3", "--out", str(tmp_path / "eval"), "--no-progress"])
    assert rc == 0
    metrics = json.loads(next((tmp_path / "eval").glob("*/metrics.json")).read_text())
    assert metrics["n_episodes"] == 6 and metrics["policy"] == f"aflow:{policy_dir}"
    from agents.strategies import get_strategy_set

    assert set(metrics["strategy_distribution"]) <= set(get_strategy_set("aflow").names)
    # a checkpoint over another strategy set is refused with one clear line
    assert cli(["evaluate", "--env-id", "esc_env/ESCStage-v0", "--strategies", "esconv", "--policy", f"aflow:{policy_dir}",
                "--episodes", "2", "--out", str(tmp_path / "eval2"), "--no-progress"]) == 2


def test_give_ups_in_rollouts_count_as_failures(env):
    """Fault 1: with outcome-only rewards no give-up in a rollout registered as a failure (its
    -1 was replaced by 0); with env rewards a give-up (-1.125) was valued above a bad step."""
    cfg = MCTSConfig(n_simulations=30, max_depth=10, reward="outcome", trees_per_batch=16)
    trees = BatchedMCTS(env, cfg).run([(None, 2_000_000 + s) for s in range(16)])
    rollouts = [n for t in trees for n in t.nodes if n.rollout and n.rollout["actions"]]
    gave_up = [n for n in rollouts if n.rollout["gave_up"]]
    assert gave_up, "no rollout gave up: the check would be empty"
    for n in rollouts:
        # rollouts run to the end: the outcome is the whole leaf value
        assert n.leaf_value == (-1.0 if n.rollout["gave_up"] else n.rollout["rewards"][-1])
        assert n.rollout["rewards"][-1] in (-1.0, 0.0, 1.0)
    env_trees = BatchedMCTS(env, cfg.replace(reward="env")).run([(None, 2_000_000 + s) for s in range(16)])
    env_gave_up = [n for t in env_trees for n in t.nodes if n.rollout and n.rollout["gave_up"]]
    assert env_gave_up
    for n in env_gave_up:
        assert n.rollout["rewards"][-1] < 0 and n.leaf_value == pytest.approx(sum(n.rollout["rewards"]))
