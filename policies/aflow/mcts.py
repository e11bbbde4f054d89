r"""Monte-Carlo tree search over support strategies, many trees in lockstep.

A node is a dialogue prefix (the decision state :math:`s_t`); an edge is a support
strategy :math:`a_t`.  Each *simulation* of a tree does four things:

1. **Selection.**  From the root, draw a strategy at every node from the mixture

   .. math::

      \rho(s) = \frac{\kappa}{1 + \log(N(s) + 1)}, \qquad
      p(a \mid s) = \frac{\rho(s)}{|A|}
        + (1 - \rho(s))\,\operatorname{softmax}_a\!\Big(\frac{1}{T}\Big[Q(s,a)
        + \lambda\, P(a \mid s)\, \frac{\sqrt{N(s)}}{c + N(s,a)}\Big]\Big)

   (:func:`selection_distribution`; :math:`P` is the prior, :math:`Q(s,a)=q_{init}` for a
   strategy never tried), and follow the drawn edge while it exists.  The walk stops at
   a finished node, at ``max_depth``, or at the first drawn strategy that has no child
   yet.
2. **Expansion.**  Only that *drawn* strategy is expanded: one new child per simulation
   (not one per strategy), so a simulation costs one environment transition, the tree
   grows where selection points, and ``n_simulations`` bounds the number of nodes.
3. **Rollout.**  From the new child, transitions with strategies drawn from the prior
   **until the episode ends** (``rollout_steps=None``, the default; an int caps the
   rollout, see below); the leaf value is the discounted sum of their step rewards, and 0
   for a child that already finished the episode.  With ``reward="rubric"`` a step in
   which the seeker gives up is worth ``giveup_value`` (0, the paper's terminal value on
   a quit: the lowest value a rubric reward, which is positive, can have); with any other
   step reward (``"env"``, ``"outcome"``, a callable) the step keeps its own reward,
   which already prices the give-up (a give-up of -1.125 must not become 0).
4. **Backup.**  Along the path, with :math:`G` the return from each node
   (:math:`G_{leaf}` = leaf value, :math:`G_{parent} = r + \text{discount}\cdot G_{child}`),
   running means :math:`N \mathrel{+}= 1`, :math:`V(s) \mathrel{+}= (G_s - V(s))/N(s)`,
   :math:`Q(s,a) \mathrel{+}= (G_{s} - Q(s,a))/N(s,a)` (:func:`running_mean`).

**Why the rollout runs to the end.**  :math:`G` sums step rewards, so it is a return
estimate only when every simulation's walk (tree path + rollout) reaches the episode's end.
With a one-step rollout a walk that stops at depth 1 sums 2 rewards and one that stops at
depth 5 sums 6, so Q grew with how deep and how often a branch had been explored (with 8
identical strategies, 60 simulations gave the root children Q = 12.4, 4.9 and 3.0).  With
rollouts to the end every walk covers the whole episode, and equal strategies get equal Q
(``tests/test_aflow.py::test_identical_strategies_get_equal_q``).  An int
``rollout_steps`` (cheaper on an LLM environment) keeps that property only when
``depth + rollout_steps`` reaches the end from every leaf.

**Lockstep batching** (:class:`BatchedMCTS`): a round runs one simulation in *every*
tree; all expansions of the round go to the environment in ONE
``env.unwrapped.transition(states, actions)`` call (on ``esc_env/ESC-v0`` that is one
batched LLM call per role), the new nodes' priors in one prior call, and each rollout
step in one more transition call.  Each tree draws from its own random generator, seeded
by ``(config.seed, tree seed, persona)``, so a tree's result does not depend on which
other trees shared its batch: :func:`search_one_tree` (a batch of one) gives the same
tree, given a deterministic environment (``ESCStage-v0`` always; ``ESC-v0`` with greedy
decoding, up to the backend's batched-padding numerics).

**Resumable runs** (:meth:`BatchedMCTS.run`): trees are searched in chunks of
``trees_per_batch`` and each finished tree is written at once to its own JSON file
(atomically).  A run that is interrupted and started again loads the finished files and
searches only the others; the result equals the uninterrupted run for the same reason.

**Ablation** ``mode="random"``: no tree policy.  Each simulation walks a *complete*
uniformly random path from the root (to ``max_depth`` or the end of the episode),
expanding every missing node on the way, then rolls out and backs up as above.
``random_paths`` sets how many (default: :meth:`MCTSConfig.n_random_paths`, about the
transitions that ``n_simulations`` MCTS simulations use: with rollouts to the end, one
path per simulation).
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from agents.judges.rubric import AFLOW_RUBRIC_WEIGHTS, check_rubric_weights
from esc_env.core import SearchableEnv, StepInfo
from esc_env.fileio import jsonable
from esc_env.state import episode_of

from .tree import Node, Tree, tree_key

#: AFlow's rubric weights (empathy, information quality, naturalness, strategic efficacy): the
#: rubric judge's own (:data:`agents.judges.rubric.AFLOW_RUBRIC_WEIGHTS`), the default of the search
RUBRIC_WEIGHTS: Mapping[str, float] = AFLOW_RUBRIC_WEIGHTS

PriorFn = Callable[[list, list], np.ndarray]
StepRewardFn = Callable[[Any], float]


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MCTSConfig:
    """Every constant of the search.

    Attributes:
        n_simulations: simulations per tree (paper: 10).
        max_depth: deepest node expanded, in supporter turns from the root (paper: 10).
        rollout_steps: transitions after a new leaf to estimate its value; ``None``
            (default): until the episode ends, so every backed-up G is a whole-episode
            return (the paper's 1 makes Q depth-biased; see the module docstring).
        kappa: :math:`\\kappa` of the uniform-exploration probability (paper: 0.1).
        lam: :math:`\\lambda`, weight of the prior bonus (paper: 1).
        c: :math:`c` in the bonus denominator :math:`c + N(s,a)`.
        temperature: :math:`T` of the selection softmax.
        q_init: :math:`Q(s,a)` of a strategy not tried yet at ``s``.
        discount: discount of step rewards in returns (1: undiscounted).
        giveup_value: with ``reward="rubric"`` only: the value of a step in which the
            seeker gives up (paper: 0).  Other rewards keep their own give-up reward.
        rubric_normalization: ``reward="rubric"`` divides the weighted rubric score by this
            (the authors' ``reward_normalization`` 2.5: scores 1-5 with weights summing to
            0.5 give step rewards in [0.2, 1]).
        select: ``"sample"`` (draw from the mixture, as in the paper) or ``"argmax"``.
        rollout_policy: strategy of rollout steps: ``"prior"`` (draw from the prior),
            ``"prior-argmax"`` or ``"uniform"``.
        reward: the step reward: ``"env"`` (the environment's reward), ``"rubric"``
            (AFlow's weighted rubric scores; needs the env's ``"rubric"`` judge) or
            ``"outcome"`` (only at the end: +1 relief, -1 gave up, 0 otherwise).  A
            callable is passed to :class:`BatchedMCTS` instead.
        rubric_weights: weights of the rubric dimensions for ``reward="rubric"``; ``None``
            (default): the environment's, which score its rubric reward term
            (``env.unwrapped.engine.rubric_weights``: ``RewardConfig.rubric_weights``, else the
            rubric judge's own, AFlow's by default).  :class:`BatchedMCTS` fills them in, so
            the trees record the weights used.
        prior: ``"uniform"`` or ``"llm"`` (the supporter LLM's strategy probabilities);
            a callable is passed to :class:`BatchedMCTS` instead.
        mode: ``"mcts"``, or ``"random"`` for the random-trajectories ablation.
        random_paths: paths per tree in ``"random"`` mode (``None``: same transition
            budget as MCTS, see :meth:`n_random_paths`).
        trees_per_batch: trees searched in lockstep by :meth:`BatchedMCTS.run`.
        seed: base seed of every tree's random generator.
    """

    n_simulations: int = 10
    max_depth: int = 10
    rollout_steps: int | None = None
    kappa: float = 0.1
    lam: float = 1.0
    c: float = 1.0
    temperature: float = 1.0
    q_init: float = 0.0
    discount: float = 1.0
    giveup_value: float = 0.0
    rubric_normalization: float = 2.5
    select: str = "sample"
    rollout_policy: str = "prior"
    reward: str = "env"
    rubric_weights: Mapping[str, float] | None = None
    prior: str = "uniform"
    mode: str = "mcts"
    random_paths: int | None = None
    trees_per_batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_simulations", "max_depth", "trees_per_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MCTSConfig.{name} must be a positive int, got {v!r}")
        r = self.rollout_steps
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 0):
            raise ValueError(f"MCTSConfig.rollout_steps must be None (until the episode ends) or an int >= 0, got {r!r}")
        if not (self.rubric_normalization > 0.0):
            raise ValueError(f"MCTSConfig.rubric_normalization must be > 0, got {self.rubric_normalization!r}")
        if self.random_paths is not None and (not isinstance(self.random_paths, int) or self.random_paths < 1):
            raise ValueError(f"MCTSConfig.random_paths must be None or a positive int, got {self.random_paths!r}")
        if not (self.kappa >= 0.0):
            raise ValueError(f"MCTSConfig.kappa must be >= 0, got {self.kappa!r}")
        if not (self.c > 0.0):
            raise ValueError(f"MCTSConfig.c must be > 0, got {self.c!r}")
        if not (self.temperature > 0.0):
            raise ValueError(f"MCTSConfig.temperature must be > 0, got {self.temperature!r}")
        if not (0.0 < self.discount <= 1.0):
            raise ValueError(f"MCTSConfig.discount must be in (0, 1], got {self.discount!r}")
        choices = {
            "select": ("sample", "argmax"),
            "rollout_policy": ("prior", "prior-argmax", "uniform"),
            "reward": ("env", "rubric", "outcome", "custom"),
            "prior": ("uniform", "llm", "custom"),
            "mode": ("mcts", "random"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"MCTSConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.rubric_weights is not None:
            object.__setattr__(self, "rubric_weights", check_rubric_weights(self.rubric_weights, "MCTSConfig.rubric_weights"))

    def n_random_paths(self) -> int:
        """Paths per tree in ``"random"`` mode: ``random_paths``; else, with rollouts to the
        end, ``n_simulations`` (a simulation and a random path each play one whole episode
        from the root, reusing the nodes the tree already has); else the count whose
        transitions (``max_depth + rollout_steps`` each at most) match the MCTS budget of
        ``n_simulations * (1 + rollout_steps)``."""
        if self.random_paths is not None:
            return self.random_paths
        if self.rollout_steps is None:
            return self.n_simulations
        return max(1, math.ceil(self.n_simulations * (1 + self.rollout_steps) / (self.max_depth + self.rollout_steps)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rubric_weights"] = dict(self.rubric_weights) if self.rubric_weights is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MCTSConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown MCTSConfig option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "MCTSConfig":
        d = self.to_dict()
        d.update(changes)
        return MCTSConfig.from_dict(d)


# --------------------------------------------------------------------------------------
# the selection rule and the backup (pure functions)
# --------------------------------------------------------------------------------------


def exploration_probability(n_visits: int, kappa: float) -> float:
    r""":math:`\rho(s) = \kappa / (1 + \log(N(s) + 1))`, the chance of a uniform draw."""
    return float(kappa) / (1.0 + math.log(float(n_visits) + 1.0))


def selection_scores(q: np.ndarray, prior: np.ndarray, n_s: int, n_sa: np.ndarray, lam: float, c: float) -> np.ndarray:
    r""":math:`Q(s,a) + \lambda P(a|s)\sqrt{N(s)}/(c + N(s,a))`; all arrays of shape ``(n_strategies,)``."""
    q = np.asarray(q, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    n_sa = np.asarray(n_sa, dtype=np.float64)
    return q + lam * prior * math.sqrt(float(n_s)) / (c + n_sa)


def softmax(x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) / temperature
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def selection_distribution(
    q: np.ndarray,
    prior: np.ndarray,
    n_s: int,
    n_sa: np.ndarray,
    *,
    kappa: float = 0.1,
    lam: float = 1.0,
    c: float = 1.0,
    temperature: float = 1.0,
) -> np.ndarray:
    r"""The selection mixture :math:`\rho/|A| + (1-\rho)\,\mathrm{softmax}(\text{scores}/T)`.

    Args:
        q: :math:`Q(s,\cdot)`, shape ``(n,)`` (``q_init`` where untried).
        prior: :math:`P(\cdot|s)`, shape ``(n,)``.
        n_s: :math:`N(s)`.
        n_sa: :math:`N(s,\cdot)`, shape ``(n,)``.

    Returns:
        probabilities, shape ``(n,)``, summing to 1.
    """
    scores = selection_scores(q, prior, n_s, n_sa, lam, c)
    rho = exploration_probability(n_s, kappa)
    n = len(scores)
    return rho / n + (1.0 - rho) * softmax(scores, temperature)


def running_mean(mean: float, count: int, x: float) -> float:
    """The mean after adding ``x`` as the ``count``-th sample (``count`` >= 1, already incremented)."""
    return mean + (x - mean) / count


def backup(path: Sequence[Node], leaf_value: float, discount: float = 1.0) -> None:
    r"""Back up one simulation along ``path`` (root first, leaf last), in place.

    With :math:`G_{leaf}` = ``leaf_value`` and :math:`G_{parent} = r_{child} + \gamma G_{child}`:
    every node gets ``visits += 1`` and ``value`` = running mean of its :math:`G`; every
    non-root node's ``q`` (the edge from its parent) = running mean of :math:`G_{parent}`.
    """
    g = float(leaf_value)
    for node in reversed(path):
        node.visits += 1
        node.value = running_mean(node.value, node.visits, g)
        if node.parent is not None:
            g = node.reward + discount * g
            node.q = running_mean(node.q, node.visits, g)


# --------------------------------------------------------------------------------------
# priors and step rewards
# --------------------------------------------------------------------------------------


def state_turns(state: dict) -> list[dict]:
    """The dialogue turns (``{"speaker", "text", "strategy"?}`` dicts) held in an env state."""
    episode = episode_of(state)
    if "turns" in episode:
        return list(episode["turns"])
    raise KeyError("the environment state holds no 'turns'")


def uniform_prior(n_strategies: int) -> PriorFn:
    """A prior that gives every strategy ``1 / n_strategies``."""

    def prior(states: list, observations: list) -> np.ndarray:
        return np.full((len(states), n_strategies), 1.0 / n_strategies)

    prior.__name__ = "uniform_prior"
    return prior


class LLMPrior:
    """The supporter LLM's probabilities of each strategy as the next move.

    Calls ``env.unwrapped.engine.supporter.strategy_probs(dialogues)`` once for all the
    states it is given (dialogues as lists of :class:`agents.dialogue.Turn`).
    """

    def __init__(self, env: Any) -> None:
        core = getattr(env, "unwrapped", env)
        supporter = getattr(getattr(core, "engine", None), "supporter", None)
        if supporter is None or not hasattr(supporter, "strategy_probs"):
            raise ValueError(
                "prior='llm' needs an LLM environment (esc_env/ESC-v0) whose engine.supporter has strategy_probs(); "
                "use prior='uniform' or pass a callable prior(states, observations) -> (n, n_strategies)"
            )
        self.supporter = supporter

    def __call__(self, states: list, observations: list) -> np.ndarray:
        from agents.dialogue import Turn

        if not states:
            return np.zeros((0, 0))
        dialogues = [[Turn.from_dict(t) for t in state_turns(s)] for s in states]
        return np.asarray(self.supporter.strategy_probs(dialogues), dtype=np.float64)


def resolve_prior(spec: "str | PriorFn", env: Any, n_strategies: int) -> PriorFn:
    """``"uniform"`` | ``"llm"`` | a callable ``prior(states, observations) -> (n, n_strategies)``."""
    if callable(spec):
        return spec
    if spec == "uniform":
        return uniform_prior(n_strategies)
    if spec == "llm":
        return LLMPrior(env)
    raise ValueError(f"prior must be 'uniform', 'llm' or a callable, got {spec!r}")


def normalise_prior(p: np.ndarray, n: int, n_strategies: int) -> np.ndarray:
    """Check the shape ``(n, n_strategies)`` and renormalise rows (non-finite -> uniform)."""
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n, n_strategies):
        raise ValueError(f"the prior returned shape {p.shape}, expected {(n, n_strategies)}")
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    sums = p.sum(axis=1, keepdims=True)
    return np.where(sums > 0, p / np.where(sums > 0, sums, 1.0), 1.0 / n_strategies)


def env_rubric_weights(core: Any) -> dict[str, float]:
    """The rubric dimension weights of an environment's reward: its engine's ``rubric_weights``
    (the LLM envs), else its ``reward_config``'s (the stage env), else AFlow's."""
    from esc_env.rewards import effective_rubric_weights

    weights = getattr(getattr(core, "engine", None), "rubric_weights", None)
    if isinstance(weights, Mapping):
        return dict(weights)
    cfg = getattr(core, "reward_config", None)
    if cfg is not None and hasattr(cfg, "rubric_weights"):
        return effective_rubric_weights(cfg)
    return dict(AFLOW_RUBRIC_WEIGHTS)


def env_step_reward(t: Any) -> float:
    """The environment's own reward of the step."""
    return float(t.reward)


def rubric_step_reward(weights: Mapping[str, float] = RUBRIC_WEIGHTS, normalization: float = 2.5) -> StepRewardFn:
    r"""AFlow's step reward :math:`\sum_d w_d R_d / \text{normalization}` over the rubric judge's
    scores :math:`R_d` (``info["judges"]["rubric"]``; the env needs ``judges=("affect", "rubric")``).
    The authors divide by ``reward_normalization`` 2.5."""
    weights = dict(weights)
    norm = float(normalization)

    def reward(t: Any) -> float:
        rubric = (t.info.get("judges") or {}).get("rubric")
        if rubric is None:
            raise ValueError(
                "reward='rubric' needs rubric scores in info['judges']['rubric']: "
                "make the env with judges=('affect', 'rubric'), or use reward='env'"
            )
        missing = sorted(set(weights) - set(rubric))
        if missing:
            raise ValueError(f"the rubric judge gave {sorted(rubric)}; the rubric weights also need {missing}")
        return float(sum(w * float(rubric[k]) for k, w in weights.items())) / norm

    reward.__name__ = "rubric_step_reward"
    return reward


def outcome_step_reward(t: Any) -> float:
    """Outcome-only supervision: 0 on every step but the last; +1 relief, -1 gave up, 0 turn limit."""
    if not (t.terminated or t.truncated):
        return 0.0
    if t.info.get("success"):
        return 1.0
    if t.info.get("gave_up"):
        return -1.0
    return 0.0


def make_step_reward(spec: "str | StepRewardFn", rubric_weights: Mapping[str, float] = RUBRIC_WEIGHTS,
                     rubric_normalization: float = 2.5) -> StepRewardFn:
    """``"env"`` | ``"rubric"`` | ``"outcome"`` | a callable ``reward(transition) -> float``."""
    if callable(spec):
        return spec
    if spec == "env":
        return env_step_reward
    if spec == "rubric":
        return rubric_step_reward(rubric_weights, rubric_normalization)
    if spec == "outcome":
        return outcome_step_reward
    raise ValueError(f"reward must be 'env', 'rubric', 'outcome' or a callable, got {spec!r}")


# --------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------

#: the info a tree node keeps: every StepInfo key but ``usage``, and the stage env's ``stage``
_INFO_KEYS = tuple(k for k in StepInfo.__annotations__ if k != "usage") + ("stage",)


@dataclass
class SearchStats:
    """Counters of a search (what :mod:`benchmarks.mcts_throughput` reports)."""

    rounds: int = 0
    transition_calls: int = 0
    transitions: int = 0
    prior_calls: int = 0
    nodes: int = 0
    seconds: float = 0.0

    @property
    def nodes_per_second(self) -> float:
        return self.nodes / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["nodes_per_second"] = self.nodes_per_second
        return d


def _state_persona_id(state: dict) -> str | None:
    episode = episode_of(state)
    persona = episode.get("persona")
    return persona.get("id") if isinstance(persona, dict) else None


def tree_rng(config: MCTSConfig, key: str) -> np.random.Generator:
    """The random generator of one tree: depends only on the config seed and the tree's key
    (its requested persona and seed), never on the other trees of its batch."""
    return np.random.default_rng([int(config.seed), zlib.crc32(key.encode())])


@dataclass
class _Walk:
    tree: int
    path: list[Node]
    pending: int | None = None  # strategy to expand at path[-1]
    stopped: bool = False


class BatchedMCTS:
    """Searches many trees in lockstep, one environment call per round for all of them.

    Args:
        env: an esc-env environment (``gym.make(...)`` result or the bare env) with
            ``reset``, ``get_state`` and the batched ``transition``.
        config: the :class:`MCTSConfig`.
        prior: overrides ``config.prior``: ``"uniform"``, ``"llm"`` or a callable
            ``prior(states: list[dict], observations: list[dict]) -> array (n, n_strategies)``.
        reward: overrides ``config.reward``: ``"env"``, ``"rubric"``, ``"outcome"`` or a
            callable ``reward(transition) -> float``.
        progress: show tqdm progress bars.
    """

    def __init__(
        self,
        env: Any,
        config: MCTSConfig | None = None,
        *,
        prior: "str | PriorFn | None" = None,
        reward: "str | StepRewardFn | None" = None,
        progress: bool = False,
    ) -> None:
        self.env = env
        self.core: SearchableEnv = getattr(env, "unwrapped", env)
        for needed in ("get_state", "transition"):  # the part of SearchableEnv that search uses
            if not hasattr(self.core, needed):
                raise TypeError(f"the environment {type(self.core).__name__} has no {needed}(); AFlow's search needs the esc-env state API")
        self.config = config or MCTSConfig()
        self.strategies: list[str] = list(self.core.strategies.names)
        self.n_strategies = len(self.strategies)
        if prior is not None and callable(prior):
            self.config = self.config.replace(prior="custom")
        elif prior is not None:
            self.config = self.config.replace(prior=prior)
        if reward is not None and callable(reward):
            self.config = self.config.replace(reward="custom")
        elif reward is not None:
            self.config = self.config.replace(reward=reward)
        if self.config.rubric_weights is None:
            self.config = self.config.replace(rubric_weights=env_rubric_weights(self.core))
        self.prior_fn = resolve_prior(prior if prior is not None else self.config.prior, self.core, self.n_strategies)
        self.reward_fn = make_step_reward(reward if reward is not None else self.config.reward, self.config.rubric_weights,
                                          self.config.rubric_normalization)
        self.progress = progress
        self.stats = SearchStats()

    # ---- trees ---------------------------------------------------------------------
    def new_tree(self, persona_id: str | None, seed: int) -> Tree:
        """The one-node tree of ``reset(seed=seed, options={"persona_id": persona_id})``."""
        options = {"persona_id": persona_id} if persona_id is not None else None
        key = tree_key(persona_id, seed)  # from the request, so a resumed run finds the file
        obs, info = self.env.reset(seed=int(seed), options=options)
        state = self.core.get_state()
        if persona_id is None:  # the env drew one: record which
            persona_id = info.get("persona_id") or _state_persona_id(state)
        root = Node(id=0, parent=None, action=None, depth=0, state=jsonable(state), observation=jsonable(obs),
                    info=jsonable({k: info[k] for k in _INFO_KEYS if k in info}))
        tree = Tree(key=key, persona_id=persona_id, seed=int(seed), strategies=list(self.strategies),
                    config=self.config.to_dict(), nodes=[root])
        return tree

    # ---- environment calls (each is ONE batched call) ------------------------------
    def _transition(self, states: list[dict], actions: list[int]) -> list:
        if not states:
            return []
        out = self.core.transition(states, [int(a) for a in actions])
        self.stats.transition_calls += 1
        self.stats.transitions += len(states)
        return out

    def _priors(self, states: list[dict], observations: list[dict]) -> np.ndarray:
        if not states:
            return np.zeros((0, self.n_strategies))
        p = self.prior_fn(states, observations)
        self.stats.prior_calls += 1
        return normalise_prior(p, len(states), self.n_strategies)

    def step_value(self, t: Any) -> float:
        """The search's value of one transition: its step reward, except that with
        ``reward="rubric"`` a step where the seeker gives up is worth ``giveup_value``."""
        if self.config.reward == "rubric" and bool((t.info or {}).get("gave_up", False)):
            return float(self.config.giveup_value)
        return float(self.reward_fn(t))

    def _child(self, tree: Tree, parent: Node, action: int, t: Any) -> Node:
        info = t.info or {}
        node = Node(
            id=len(tree.nodes),
            parent=parent.id,
            action=int(action),
            depth=parent.depth + 1,
            state=jsonable(t.state),
            observation=jsonable(t.observation),
            reward=self.step_value(t),
            env_reward=float(t.reward),
            terminated=bool(t.terminated),
            truncated=bool(t.truncated),
            success=bool(info.get("success", False)),
            gave_up=bool(info.get("gave_up", False)),
            info=jsonable({k: info[k] for k in _INFO_KEYS if k in info}),
        )
        tree.add(node)
        self.stats.nodes += 1
        if node.done:
            node.leaf_value = 0.0
        return node

    # ---- the selection walk --------------------------------------------------------
    def _draw(self, tree: Tree, node: Node, rng: np.random.Generator) -> int:
        cfg = self.config
        n = self.n_strategies
        if cfg.mode == "random":
            return int(rng.integers(n))
        q = np.full(n, cfg.q_init, dtype=np.float64)
        n_sa = np.zeros(n, dtype=np.float64)
        for a, c in node.children.items():
            q[a] = tree.nodes[c].q
            n_sa[a] = tree.nodes[c].visits
        prior = np.asarray(node.prior if node.prior is not None else np.full(n, 1.0 / n))
        p = selection_distribution(q, prior, node.visits, n_sa, kappa=cfg.kappa, lam=cfg.lam, c=cfg.c, temperature=cfg.temperature)
        if cfg.select == "argmax":
            return int(np.argmax(p))
        return int(rng.choice(n, p=p))

    def _advance(self, walk: _Walk, tree: Tree, rng: np.random.Generator) -> None:
        """Move the walk down existing edges until it needs an expansion or stops."""
        cfg = self.config
        while True:
            node = walk.path[-1]
            if node.done or node.depth >= cfg.max_depth:
                walk.stopped = True
                return
            a = self._draw(tree, node, rng)
            if a in node.children:
                walk.path.append(tree.nodes[node.children[a]])
                continue
            walk.pending = a
            return

    # ---- one round: one simulation in every tree -----------------------------------
    def _round(self, trees: list[Tree], rngs: list[np.random.Generator]) -> None:
        cfg = self.config
        walks = [_Walk(i, [t.root]) for i, t in enumerate(trees)]
        for w in walks:
            self._advance(w, trees[w.tree], rngs[w.tree])
        new_nodes: list[tuple[int, Node]] = []
        while True:
            todo = [w for w in walks if not w.stopped and w.pending is not None]
            if not todo:
                break
            results = self._transition([w.path[-1].state for w in todo], [w.pending for w in todo])
            for w, t in zip(todo, results):
                child = self._child(trees[w.tree], w.path[-1], w.pending, t)
                w.path.append(child)
                w.pending = None
                new_nodes.append((w.tree, child))
                if cfg.mode == "mcts":
                    w.stopped = True  # one expansion per simulation
                else:
                    self._advance(w, trees[w.tree], rngs[w.tree])
        # priors of the new, unfinished nodes: one call
        need = [n for _, n in new_nodes if not n.done]
        for n, p in zip(need, self._priors([n.state for n in need], [n.observation for n in need])):
            n.prior = [float(x) for x in p]
        # rollouts from the final node of each walk that has no value estimate yet
        leaves = [(w, w.path[-1]) for w in walks if w.path[-1].leaf_value is None]
        values = self._rollouts([(w.tree, leaf) for w, leaf in leaves], rngs)
        for (w, leaf), (v, record) in zip(leaves, values):
            leaf.leaf_value = v
            leaf.rollout = record
        for w in walks:
            backup(w.path, w.path[-1].leaf_value or 0.0, cfg.discount)
        self.stats.rounds += 1

    def _rollout_action(self, prior: np.ndarray, rng: np.random.Generator) -> int:
        pol = self.config.rollout_policy
        if pol == "uniform":
            return int(rng.integers(self.n_strategies))
        if pol == "prior-argmax":
            return int(np.argmax(prior))
        return int(rng.choice(self.n_strategies, p=prior))

    def _rollouts(self, leaves: list[tuple[int, Node]], rngs: list[np.random.Generator]) -> list[tuple[float, dict]]:
        """Batched rollouts from each leaf, until its episode ends (or ``rollout_steps``
        transitions); returns (discounted sum of step values, record) per leaf."""
        cfg = self.config
        out: list[tuple[float, dict]] = [(0.0, {"actions": [], "rewards": [], "gave_up": False}) for _ in leaves]
        if cfg.rollout_steps == 0 or not leaves:
            return out
        states = [leaf.state for _, leaf in leaves]
        observations = [leaf.observation for _, leaf in leaves]
        priors = [np.asarray(leaf.prior if leaf.prior is not None else np.full(self.n_strategies, 1.0 / self.n_strategies))
                  for _, leaf in leaves]
        alive = [not leaf.done for _, leaf in leaves]
        scale = [1.0] * len(leaves)
        step = 0
        while cfg.rollout_steps is None or step < cfg.rollout_steps:
            idx = [i for i in range(len(leaves)) if alive[i]]
            if not idx:
                break
            if step > 0 and self.config.rollout_policy != "uniform":
                ps = self._priors([states[i] for i in idx], [observations[i] for i in idx])
                for i, p in zip(idx, ps):
                    priors[i] = p
            actions = [self._rollout_action(priors[i], rngs[leaves[i][0]]) for i in idx]
            results = self._transition([states[i] for i in idx], actions)
            for i, a, t in zip(idx, actions, results):
                v, rec = out[i]
                r = self.step_value(t)
                rec["actions"].append(int(a))
                rec["rewards"].append(r)
                rec["gave_up"] = bool((t.info or {}).get("gave_up", False))
                v += scale[i] * r
                alive[i] = not (t.terminated or t.truncated)
                out[i] = (v, rec)
                scale[i] *= cfg.discount
                states[i] = jsonable(t.state)
                observations[i] = jsonable(t.observation)
            step += 1
        return out

    # ---- public entry points -------------------------------------------------------
    def search(self, trees: Sequence[Tree]) -> list[Tree]:
        """Run ``n_simulations`` rounds (``mode="random"``: ``n_random_paths()``) on ``trees`` in lockstep.

        The trees must be fresh (from :meth:`new_tree`); they are filled in place and
        returned with ``complete=True``.
        """
        trees = list(trees)
        if not trees:
            return []
        t0 = time.perf_counter()
        for t in trees:
            if len(t.nodes) != 1 or t.complete:
                raise ValueError(f"tree {t.key} is not fresh: search() starts from a one-node tree")
        rngs = [tree_rng(self.config, t.key) for t in trees]
        roots = [t.root for t in trees if t.root.prior is None and not t.root.done]
        for n, p in zip(roots, self._priors([n.state for n in roots], [n.observation for n in roots])):
            n.prior = [float(x) for x in p]
        rounds = self.config.n_simulations if self.config.mode == "mcts" else self.config.n_random_paths()
        bar = _tqdm(range(rounds), desc=f"search {len(trees)} trees", disable=not self.progress, leave=False)
        for _ in bar:
            self._round(trees, rngs)
        for t in trees:
            t.complete = True
        self.stats.seconds += time.perf_counter() - t0
        return trees

    def run(self, starts: Sequence[tuple[str | None, int]], out_dir: str | Path | None = None) -> list[Tree]:
        """Search one tree per ``(persona_id, seed)``; resumable through ``out_dir``.

        Trees go in chunks of ``config.trees_per_batch`` through :meth:`search`; each
        finished tree is written to ``out_dir/<key>.json`` at once.  Trees whose file
        already exists (with the same config) are loaded instead of searched, so an
        interrupted run continues where it stopped.

        Returns:
            the trees, in the order of ``starts``.
        """
        out = Path(out_dir) if out_dir is not None else None
        results: dict[int, Tree] = {}
        todo: list[int] = []
        for i, (pid, seed) in enumerate(starts):
            if out is not None:
                path = out / f"{tree_key(pid, seed)}.json"
                if path.is_file():
                    tree = Tree.load(path)
                    self._check_config(tree, path)
                    results[i] = tree
                    continue
            todo.append(i)
        size = self.config.trees_per_batch
        chunks = [todo[k:k + size] for k in range(0, len(todo), size)]
        bar = _tqdm(total=len(todo), desc="MCTS trees", unit="tree", disable=not self.progress)
        for chunk in chunks:
            trees = [self.new_tree(*starts[i]) for i in chunk]
            self.search(trees)
            for i, tree in zip(chunk, trees):
                if out is not None:
                    tree.save(out / f"{tree.key}.json")
                results[i] = tree
            bar.update(len(chunk))
        bar.close()
        return [results[i] for i in range(len(starts))]

    def _check_config(self, tree: Tree, path: Path) -> None:
        mine = jsonable(self.config.to_dict())
        if jsonable(tree.config) != mine:
            diff = sorted(k for k in set(mine) | set(tree.config) if mine.get(k) != tree.config.get(k))
            raise ValueError(f"{path} was searched with another MCTSConfig (differs in {diff}); use a new output folder")


def search_one_tree(
    env: Any,
    config: MCTSConfig | None = None,
    persona_id: str | None = None,
    seed: int = 0,
    *,
    prior: "str | PriorFn | None" = None,
    reward: "str | StepRewardFn | None" = None,
) -> Tree:
    """The non-batched baseline: one tree searched on its own (every call has one state).

    Same semantics as :class:`BatchedMCTS` (it is a lockstep search of a batch of one),
    so it returns the same tree as the batched search for a deterministic environment.
    """
    mcts = BatchedMCTS(env, config, prior=prior, reward=reward)
    return mcts.search([mcts.new_tree(persona_id, seed)])[0]


def _tqdm(*args, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(*args, **kwargs)
