"""Future-oriented rewards by simulation (RLFF-ESC, step 1).

For a dialogue prefix (ending with a seeker turn) and a candidate supporter response, the
simulator plays the conversation forward with the environment's LLM seeker and judge: the
candidate is said, the seeker answers, then ``horizon`` more supporter turns are written by
a *future policy* (by default the env's supporter agent with random strategies) and
answered.  This is repeated ``rollouts`` times.  The future reward of one rollout is::

    R = (I_0 - I_end) / (5 - 1)  +  success_bonus * [seeker relieved]  -  give_up_penalty * [seeker gave up]

where ``I_0`` is the judged intensity at the prefix (before the candidate) and ``I_end`` the
judged intensity when the rollout ends (after ``1 + horizon`` supporter turns, or earlier if
the seeker was relieved or gave up).  Dividing by the span of the 1-5 scale puts the first
term in [-1, 1].  The candidate's future reward is the mean over rollouts.

Batching: every (prefix, candidate, rollout) row that is still running at a simulated turn
goes to ``env.unwrapped.transition`` together -- ONE transition call (one seeker generate,
one judge score) per simulated turn, plus one supporter generate for the future policy's
utterances.  ``simulate_one_at_a_time`` is the unbatched reference for the throughput
benchmark.

Records (one JSON line per prefix and candidate)::

    {"prefix_id", "persona_id", "context": [turn dicts], "reference", "candidate_index",
     "candidate", "candidate_source", "rewards": [R per rollout], "mean", "intensity_before",
     "intensity_after": [...], "success": [...], "gave_up": [...], "turns": [...],
     "seeker_replies": [...], "seeds": [...], "future_strategies": [[...] per rollout], "horizon", "rollouts"}

``run`` appends records to a JSONL file and skips prefixes already in it, so an interrupted
simulation resumes where it stopped.

Common random numbers.  The reward model learns from *differences between candidates of one
prefix*, so the simulator gives every candidate of a prefix the same random choices at the
same rollout index ``m``: the same episode seed (the seeker's sampling seed derives from it)
and the same future supporter strategies.  Seeds derive from ``(seed, prefix id, m)`` alone
(:meth:`FutureSimulator.row_seed`, :meth:`FutureSimulator.future_seed`), never from the
batch.  Every LLM call of a row (the env's seeker, emotion tracker and supporter, and the
future policy) gets the row's own seed, and every backend samples each row from its own
seeded stream (:class:`agents.backends.row_sampling.RowSampler` on transformers, one
``SamplingParams`` per request on vLLM, the row's seed in its request on OpenAI-compatible
servers), so a prefix's futures are the same whatever prefixes share its batch.
:func:`future_reward_spread` measures the within-prefix noise.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from agents.dialogue import Turn
from agents.personas import Persona
from esc_env.core import SearchableEnv
from esc_env.spaces import INTENSITY_HIGH, INTENSITY_LOW
from esc_env.state import episode_of

from esc_env.fileio import append_jsonl_atomic, read_jsonl

SCALE_SPAN = INTENSITY_HIGH - INTENSITY_LOW  # 4 on the 1-5 scale


# ----------------------------------------------------------------------------- prefixes
@dataclass
class Prefix:
    """A dialogue prefix to simulate from.

    Attributes:
        id: unique id, e.g. ``"esconv:train/17@5"`` (dialogue id @ number of turns).
        persona: the seeker persona the LLM seeker plays in the future turns.
        turns: the dialogue so far; the last turn is the seeker's.
        seed: base seed of the simulated futures.
        reference: the human supporter's actual next turn, when known (ESConv).
        reference_strategy: its strategy label, when known.
    """

    id: str
    persona: Persona
    turns: list[Turn]
    seed: int = 0
    reference: str | None = None
    reference_strategy: str | None = None

    def __post_init__(self) -> None:
        if not self.turns or self.turns[-1].speaker != "seeker":
            raise ValueError(f"prefix {self.id!r}: a prefix must be non-empty and end with a seeker turn")

    def to_dict(self) -> dict:
        return {"id": self.id, "persona": self.persona.to_dict(), "turns": [t.to_dict() for t in self.turns],
                "seed": self.seed, "reference": self.reference, "reference_strategy": self.reference_strategy}

    @classmethod
    def from_dict(cls, d: dict) -> "Prefix":
        return cls(d["id"], Persona.from_dict(d["persona"]), [Turn.from_dict(t) for t in d["turns"]],
                   int(d.get("seed", 0)), d.get("reference"), d.get("reference_strategy"))


def stable_seed(*parts: Any) -> int:
    """A seed in [0, 2**31 - 1) from any printable parts (same parts, same seed, every run)."""
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little") % (2**31 - 1)


def prefixes_from_esconv(
    dialogues: Sequence[Any],
    n: int,
    *,
    seed: int = 0,
    max_context_turns: int = 8,
    min_prefix_turns: int = 2,
) -> list[Prefix]:
    """Sample ``n`` prefixes from ESConv dialogues (``esc_env.datasets.load_esconv``).

    Points are places where the human supporter spoke next after a seeker turn; at most one
    point per dialogue until every dialogue has given one.  The persona comes from the whole
    dialogue (``agents.personas.loaders.persona_from_dialogue``); the context keeps the last
    ``max_context_turns`` turns (shorter prompts on CPU).
    """
    from agents.personas.loaders import persona_from_dialogue
    from esc_env.datasets import esconv_prefixes

    rng = np.random.default_rng(seed)
    by_dialogue: dict[str, list] = {}
    for point in esconv_prefixes(dialogues, min_prefix_turns=min_prefix_turns):
        if point.prefix and point.prefix[-1].speaker == "seeker":
            by_dialogue.setdefault(point.dialogue.id, []).append(point)
    ids = list(by_dialogue)
    rng.shuffle(ids)
    out: list[Prefix] = []
    personas: dict[str, Persona] = {}
    while len(out) < n and any(by_dialogue.values()):
        for did in ids:
            points = by_dialogue[did]
            if not points or len(out) >= n:
                continue
            point = points.pop(int(rng.integers(len(points))))
            if did not in personas:
                personas[did] = persona_from_dialogue(point.dialogue)
            ctx = list(point.prefix)[-max_context_turns:]
            while ctx[0].speaker != "seeker":  # start the context on a seeker turn (it ends with one)
                ctx = ctx[1:]
            pid = f"{did}@{len(point.prefix)}"
            out.append(Prefix(pid, personas[did], ctx, stable_seed(seed, pid), point.reference.text, point.reference.strategy))
    return out


# ----------------------------------------------------------------------------- future policy
class FuturePolicy(Protocol):
    """Writes the supporter turns after the candidate.  One batched call for all rows."""

    def propose(self, states: list[dict], seeds: Sequence[int]) -> list[tuple[int | None, str]]:
        """``(strategy index or None, utterance)`` for every state; ``seeds[i]`` is row ``i``'s
        seed (rows that should share random choices get the same seed)."""
        ...


class SupporterFuturePolicy:
    """The env's LLM supporter with a strategy drawn uniformly at random for every row.

    Random strategies make the rollouts of one candidate differ, so their mean estimates
    the candidate's value under a generic continuation rather than one fixed script.  Row
    ``i``'s strategy is drawn from ``seeds[i]`` alone, so rows with the same seed (the
    candidates of one prefix at one rollout index) get the same strategy whatever their
    batch-mates.  The text is one batched generate call in which row ``i`` samples with
    seed ``seeds[i]``.
    """

    def __init__(self, env: Any) -> None:
        engine = env.unwrapped.engine
        self.supporter = engine.supporter
        self.strategies = engine.strategies

    def strategy_of(self, seed: int) -> int:
        """The strategy index row seed ``seed`` draws (uniform over the strategy set)."""
        return int(np.random.default_rng(seed).integers(len(self.strategies)))

    def propose(self, states: list[dict], seeds: Sequence[int]) -> list[tuple[int | None, str]]:
        if len(seeds) != len(states):
            raise ValueError(f"got {len(seeds)} seeds for {len(states)} states")
        idx = [self.strategy_of(s) for s in seeds]
        dialogues = [[Turn.from_dict(t) for t in episode_of(s)["turns"]] for s in states]
        texts = self.supporter.respond(dialogues, [self.strategies[i].name for i in idx], seed=[int(s) for s in seeds]) if states else []
        return list(zip(idx, texts))


def _with_seed(state: dict, seed: int) -> dict:
    s = copy.deepcopy(state)
    episode_of(s)["seed"] = int(seed)
    return s


# ----------------------------------------------------------------------------- noise of the records
def future_reward_spread(records: Sequence[dict]) -> dict:
    """How noisy simulated future rewards are, from simulator records.

    Returns ``Interval`` dicts (mean and Student-t 95% CI over their units) of:

    - ``within_prefix_variance``: per prefix with >= 2 candidates, the variance (``ddof=1``)
      of the candidates' mean rewards -- the spread the reward model must learn to order;
    - ``rollout_variance``: per candidate with >= 2 rollouts, the variance (``ddof=1``) of its
      rollout rewards;
    - ``paired_difference_variance``: per pair of candidates of one prefix, the variance
      (``ddof=1``) over rollout index ``m`` of ``R_jm - R_km``.  Common random numbers lower
      it when the rollouts of two candidates at the same ``m`` are positively correlated.

    plus ``n_records`` and ``n_prefixes``.
    """
    from esc_env.evaluation.metrics import mean_ci

    groups: dict[str, list[list[float]]] = {}
    for r in records:
        rewards = [float(x) for x in r.get("rewards", []) if x is not None and math.isfinite(float(x))]
        if rewards:
            groups.setdefault(str(r["prefix_id"]), []).append(rewards)
    within, rollout, paired = [], [], []
    for cands in groups.values():
        means = [float(np.mean(c)) for c in cands]
        if len(means) >= 2:
            within.append(float(np.var(means, ddof=1)))
        rollout.extend(float(np.var(c, ddof=1)) for c in cands if len(c) >= 2)
        for a in range(len(cands)):
            for b in range(a + 1, len(cands)):
                n = min(len(cands[a]), len(cands[b]))
                if n >= 2:
                    paired.append(float(np.var(np.subtract(cands[a][:n], cands[b][:n]), ddof=1)))

    def ci(x: list[float]) -> dict:
        return mean_ci(x).as_dict() if x else {"value": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}

    return {"within_prefix_variance": ci(within), "rollout_variance": ci(rollout),
            "paired_difference_variance": ci(paired), "n_records": sum(len(c) for c in groups.values()),
            "n_prefixes": len(groups)}


# ----------------------------------------------------------------------------- results
@dataclass
class Rollout:
    """One simulated future of one candidate.

    Attributes:
        reward: the future reward ``R`` (module docstring).
        intensity_before: judged intensity at the prefix, ``I_0``.
        intensity_after: judged intensity when the rollout ended, ``I_end``.
        success, gave_up: how the rollout ended.
        turns: supporter turns simulated (the candidate's included).
        seeker_reply: the seeker's immediate answer to the candidate.
        seed: the row's episode seed (:meth:`FutureSimulator.row_seed`).
        future_strategies: strategy index of each future supporter turn (``None`` when the
            future policy gives none).
    """

    reward: float
    intensity_before: float
    intensity_after: float
    success: bool
    gave_up: bool
    turns: int
    seeker_reply: str = ""
    seed: int = 0
    future_strategies: list = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.future_strategies is None:
            self.future_strategies = []


@dataclass
class SimulationStats:
    """Counters of one ``simulate`` call: ``transitions`` is the number of simulated
    (state, action) steps, ``transition_calls`` the number of batched calls made."""

    transitions: int = 0
    transition_calls: int = 0
    seconds: float = 0.0

    @property
    def turns_per_second(self) -> float:
        return self.transitions / self.seconds if self.seconds > 0 else 0.0


class FutureSimulator:
    """Rolls dialogues forward from candidate responses to estimate future-oriented rewards.

    Args:
        env: an esc-env environment (``gym.make("esc_env/ESCText-v0", ...)`` or an
            ``ESCEnv`` in ``"text"`` or ``"strategy+text"`` mode).  Its ``max_turns`` must
            leave room for the prefix's supporter turns plus ``1 + horizon``.
        horizon: supporter turns simulated *after* the candidate (0: only the seeker's
            immediate reaction to the candidate counts).
        rollouts: simulated futures per candidate (``M``).
        future_policy: writes the supporter turns after the candidate; default
            :class:`SupporterFuturePolicy`.
        success_bonus: added to ``R`` when the seeker signals relief in the rollout.
        give_up_penalty: subtracted from ``R`` when the seeker gives up.
        default_strategy: strategy index sent with candidates in ``"strategy+text"`` mode
            when a candidate has none (default: ``"Others"`` if the set has it, else 0).
        seed: base seed.  Common random numbers: every candidate of a prefix gets the same
            seeds at the same rollout index ``m`` -- the episode seed
            ``stable_seed(seed, prefix id, "rollout", m)`` and, for future turn ``h``, the
            future policy's row seed ``stable_seed(seed, prefix id, "future", m, h)`` (the
            same future strategies).  Seeds depend on nothing else (not on batch-mates).
        common_random_numbers: ``False`` gives every candidate its own seeds (the candidate
            index joins the seed's parts) -- the control of the noise measurement
            (``benchmarks/future_reward_noise.py``); never better for training.
    """

    def __init__(
        self,
        env: Any,
        horizon: int = 2,
        rollouts: int = 2,
        future_policy: FuturePolicy | None = None,
        success_bonus: float = 0.5,
        give_up_penalty: float = 0.5,
        default_strategy: int | None = None,
        seed: int = 0,
        common_random_numbers: bool = True,
    ) -> None:
        self.env = env
        self.unwrapped: SearchableEnv = env.unwrapped
        mode = self.unwrapped.action_mode
        if mode not in ("text", "strategy+text"):
            raise ValueError(f"FutureSimulator needs an env in 'text' or 'strategy+text' action mode, got {mode!r}")
        if horizon < 0 or rollouts < 1:
            raise ValueError(f"horizon must be >= 0 and rollouts >= 1, got horizon={horizon}, rollouts={rollouts}")
        self.action_mode = mode
        self.horizon = int(horizon)
        self.rollouts = int(rollouts)
        self.future_policy = future_policy or SupporterFuturePolicy(env)
        self.success_bonus = float(success_bonus)
        self.give_up_penalty = float(give_up_penalty)
        names = [s.name for s in self.unwrapped.strategies]
        if default_strategy is None:
            default_strategy = names.index("Others") if "Others" in names else 0
        self.default_strategy = int(default_strategy)
        self.seed = int(seed)
        self.common_random_numbers = bool(common_random_numbers)
        self.last_stats = SimulationStats()

    # ---- seeds (common random numbers) ---------------------------------------------------
    def row_seed(self, prefix_id: str, rollout: int, candidate: int | None = None) -> int:
        """Episode seed of rollout ``rollout`` of every candidate of prefix ``prefix_id``
        (``candidate`` is used only without common random numbers)."""
        if self.common_random_numbers:
            candidate = None
        return stable_seed(self.seed, prefix_id, "rollout", rollout, *(() if candidate is None else ("candidate", candidate)))

    def future_seed(self, prefix_id: str, rollout: int, turn: int, candidate: int | None = None) -> int:
        """Future policy's seed for future turn ``turn`` of rollout ``rollout`` of prefix ``prefix_id``
        (``candidate`` is used only without common random numbers)."""
        if self.common_random_numbers:
            candidate = None
        return stable_seed(self.seed, prefix_id, "future", rollout, turn, *(() if candidate is None else ("candidate", candidate)))

    # ---- the reward of one rollout ------------------------------------------------------
    def future_reward(self, intensity_before: float, intensity_after: float, success: bool, gave_up: bool) -> float:
        """``R = (I_0 - I_end) / 4 + success_bonus [relieved] - give_up_penalty [gave up]``."""
        return float(
            (intensity_before - intensity_after) / SCALE_SPAN
            + self.success_bonus * bool(success)
            - self.give_up_penalty * bool(gave_up)
        )

    def _action(self, strategy: int | None, utterance: str) -> Any:
        if self.action_mode == "text":
            return utterance
        return {"strategy": self.default_strategy if strategy is None else int(strategy), "utterance": utterance}

    def _check_room(self, states: Sequence[dict]) -> None:
        need = 1 + self.horizon
        for s in states:
            done = len(episode_of(s).get("rewards", []))
            if done + need > self.unwrapped.max_turns:
                raise ValueError(
                    f"the env's max_turns={self.unwrapped.max_turns} leaves no room to simulate {need} supporter turns "
                    f"after a prefix with {done} supporter turns; make the env with a larger max_turns"
                )

    # ---- states ---------------------------------------------------------------------------
    def make_states(self, prefixes: Sequence[Prefix]) -> list[dict]:
        """Env states at the prefixes (one batched judge call for their starting intensity)."""
        return self.unwrapped.make_states([p.persona for p in prefixes], [p.turns for p in prefixes],
                                          [p.seed for p in prefixes])

    def propose_candidates(self, prefixes: Sequence[Prefix], states: Sequence[dict], k: int,
                           include_reference: bool = True) -> tuple[list[list[str]], list[list[str]]]:
        """``k`` candidates per prefix from the env's supporter agent, each with a different
        strategy (one batched generate call), plus the human reference when known.

        Returns:
            ``(candidates, sources)``, both ``P`` lists; sources are ``"supporter:<strategy>"``
            or ``"reference"``.
        """
        strategies = self.unwrapped.strategies
        rows, names = [], []
        for p in prefixes:  # each prefix's strategies depend on its id only
            rng = np.random.default_rng(stable_seed(self.seed, "candidates", p.id))
            idx = rng.choice(len(strategies), size=min(k, len(strategies)), replace=False)
            for i in idx:
                rows.append(p.turns)
                names.append(strategies[int(i)].name)
        # each candidate's text from its own seed: (seed, prefix id, strategy), never the batch
        gen_seeds = [stable_seed(self.seed, "candidate-text", p.id, n)
                     for p, n in zip((p for p in prefixes for _ in range(min(k, len(strategies)))), names)]
        texts = self.unwrapped.engine.supporter.respond(rows, names, seed=gen_seeds) if rows else []
        cands: list[list[str]] = []
        sources: list[list[str]] = []
        pos = 0
        for p in prefixes:
            m = min(k, len(strategies))
            c, s = list(texts[pos : pos + m]), [f"supporter:{n}" for n in names[pos : pos + m]]
            pos += m
            if include_reference and p.reference and p.reference.strip():
                c.append(p.reference.strip()[:1000])
                s.append("reference")
            cands.append(c)
            sources.append(s)
        return cands, sources

    # ---- simulation -------------------------------------------------------------------------
    def simulate(self, states: Sequence[dict], candidates: Sequence[Sequence[str]],
                 prefix_ids: Sequence[str] | None = None) -> list[list[list[Rollout]]]:
        """Roll every candidate forward ``rollouts`` times, all rows batched.

        Args:
            states: ``P`` env states at the prefixes (from :meth:`make_states`).
            candidates: ``P`` lists of candidate utterances (lists may differ in length).
            prefix_ids: names used to derive the rows' seeds (default: the positions).

        Returns:
            ``out[p][j][m]``: the :class:`Rollout` of candidate ``j`` of prefix ``p``, rollout ``m``.
        """
        t0 = time.perf_counter()
        stats = SimulationStats()
        self._check_room(states)
        ids = list(prefix_ids) if prefix_ids is not None else [str(i) for i in range(len(states))]
        rows = [(p, j, m) for p in range(len(states)) for j in range(len(candidates[p])) for m in range(self.rollouts)]
        if not rows:
            self.last_stats = stats
            return [[[] for _ in c] for c in candidates]
        seeds = [self.row_seed(ids[p], m, j) for p, j, m in rows]
        cur = [_with_seed(states[p], s) for (p, j, m), s in zip(rows, seeds)]
        actions = [self._action(None, candidates[p][j]) for p, j, m in rows]
        first = self.unwrapped.transition(cur, actions)
        stats.transitions += len(rows)
        stats.transition_calls += 1
        before = [float(t.info["intensity"]["before"]) for t in first]
        after = [float(t.info["intensity"]["after"]) for t in first]
        success = [bool(t.info.get("success", False)) for t in first]
        gave_up = [bool(t.info.get("gave_up", False)) for t in first]
        replies = [str(t.info.get("seeker_utterance", "")) for t in first]
        n_turns = [1] * len(rows)
        state_of = [t.state for t in first]
        strategies: list[list] = [[] for _ in rows]
        alive = [i for i, t in enumerate(first) if not t.done]
        for h in range(self.horizon):
            if not alive:
                break
            row_seeds = [self.future_seed(ids[rows[i][0]], rows[i][2], h, rows[i][1]) for i in alive]
            proposals = self.future_policy.propose([state_of[i] for i in alive], row_seeds)
            for i, (st, _) in zip(alive, proposals):
                strategies[i].append(st)
            nxt = self.unwrapped.transition([state_of[i] for i in alive], [self._action(s, u) for s, u in proposals])
            stats.transitions += len(alive)
            stats.transition_calls += 1
            still = []
            for i, t in zip(alive, nxt):
                after[i] = float(t.info["intensity"]["after"])
                success[i] = bool(t.info.get("success", False))
                gave_up[i] = bool(t.info.get("gave_up", False))
                n_turns[i] += 1
                state_of[i] = t.state
                if not t.done:
                    still.append(i)
            alive = still
        out: list[list[list[Rollout]]] = [[[] for _ in c] for c in candidates]
        for i, (p, j, m) in enumerate(rows):
            r = self.future_reward(before[i], after[i], success[i], gave_up[i])
            out[p][j].append(Rollout(r, before[i], after[i], success[i], gave_up[i], n_turns[i], replies[i],
                                     seeds[i], strategies[i]))
        stats.seconds = time.perf_counter() - t0
        self.last_stats = stats
        return out

    def simulate_one_at_a_time(self, states: Sequence[dict], candidates: Sequence[Sequence[str]],
                               prefix_ids: Sequence[str] | None = None) -> list[list[list[Rollout]]]:
        """The same simulation, one (prefix, candidate, rollout) row at a time (for benchmarks)."""
        ids = list(prefix_ids) if prefix_ids is not None else [str(i) for i in range(len(states))]
        total = SimulationStats()
        out: list[list[list[Rollout]]] = [[[] for _ in c] for c in candidates]
        keep = self.rollouts
        try:
            self.rollouts = 1
            for p in range(len(states)):
                for j in range(len(candidates[p])):
                    for m in range(keep):
                        res = self.simulate([states[p]], [[candidates[p][j]]], [f"{ids[p]}/{j}/{m}"])
                        out[p][j].append(res[0][0][0])
                        s = self.last_stats
                        total.transitions += s.transitions
                        total.transition_calls += s.transition_calls
                        total.seconds += s.seconds
        finally:
            self.rollouts = keep
        self.last_stats = total
        return out

    # ---- the resumable driver ---------------------------------------------------------------
    def run(
        self,
        prefixes: Sequence[Prefix],
        out_path: "str | Path",
        *,
        candidates_per_prefix: int = 3,
        include_reference: bool = True,
        candidates: dict[str, list[str]] | None = None,
        prefix_batch: int = 4,
        progress: bool = True,
    ) -> list[dict]:
        """Simulate every prefix not yet in ``out_path`` and append its records.

        Args:
            prefixes: the prefixes to simulate.
            out_path: JSONL file of records; prefixes whose id is already in it are skipped.
            candidates_per_prefix: candidates written by the env's supporter (different
                strategies) when ``candidates`` does not give them.
            include_reference: also simulate the human reference turn when known.
            candidates: optional ``{prefix id: [utterances]}`` to simulate instead.
            prefix_batch: prefixes per batched simulation (rows per call =
                ``prefix_batch * candidates * rollouts``).
            progress: show a tqdm bar.

        Returns:
            all records in ``out_path`` after the run (old and new).
        """
        from tqdm.auto import tqdm

        out_path = Path(out_path)
        done = {r["prefix_id"] for r in read_jsonl(out_path, missing_ok=True)}
        todo = [p for p in prefixes if p.id not in done]
        bar = tqdm(total=len(prefixes), initial=len(prefixes) - len(todo), desc="simulate futures", unit="prefix",
                   disable=not progress)
        for start in range(0, len(todo), prefix_batch):
            chunk = todo[start : start + prefix_batch]
            states = self.make_states(chunk)
            if candidates is not None:
                cands = [list(candidates[p.id]) for p in chunk]
                sources = [["given"] * len(c) for c in cands]
            else:
                cands, sources = self.propose_candidates(chunk, states, candidates_per_prefix, include_reference)
            results = self.simulate(states, cands, [p.id for p in chunk])
            records = []
            for p, cs, ss, res in zip(chunk, cands, sources, results):
                for j, (c, s, rolls) in enumerate(zip(cs, ss, res)):
                    records.append(self.record(p, j, c, s, rolls))
            append_jsonl_atomic(out_path, records)
            bar.update(len(chunk))
            bar.set_postfix(turns_per_s=f"{self.last_stats.turns_per_second:.2f}")
        bar.close()
        return read_jsonl(out_path, missing_ok=True)

    def record(self, prefix: Prefix, j: int, candidate: str, source: str, rolls: Sequence[Rollout]) -> dict:
        """The JSON record of one candidate (see the module docstring)."""
        rewards = [r.reward for r in rolls]
        return {
            "prefix_id": prefix.id,
            "persona_id": prefix.persona.id,
            "context": [t.to_dict() for t in prefix.turns],
            "reference": prefix.reference,
            "candidate_index": j,
            "candidate": candidate,
            "candidate_source": source,
            "rewards": rewards,
            "mean": float(np.mean(rewards)) if rewards else float("nan"),
            "intensity_before": rolls[0].intensity_before if rolls else None,
            "intensity_after": [r.intensity_after for r in rolls],
            "success": [r.success for r in rolls],
            "gave_up": [r.gave_up for r in rolls],
            "turns": [r.turns for r in rolls],
            "seeker_replies": [r.seeker_reply for r in rolls],
            "seeds": [r.seed for r in rolls],
            "future_strategies": [r.future_strategies for r in rolls],
            "horizon": self.horizon,
            "rollouts": self.rollouts,
        }
