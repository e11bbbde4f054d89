r"""Search trees -> prefix records (JSONL), the training data of AFPO.

Every root-to-leaf path :math:`s_0 \to s_1 \to \dots \to s_L` of a tree gives ``L + 1``
records, one per decision state :math:`s_t`: the dialogue prefix (as turns and as the
observation the policy sees), the strategy :math:`a_t` taken on the path (``None`` in the
last record, which is kept because the flow of :math:`s_L` enters the balance), the
search's statistics at :math:`s_t` and a *preferred* / *negative* strategy pair:

``preferred``
    the tried strategy with the highest :math:`Q(s_t,a)` (ties: more visits, then the
    lower index); ``None`` where nothing was tried.
``negative``
    a low-prior strategy other than ``preferred``: the smallest prior; ties broken by the
    lowest :math:`Q` among tried strategies (known to be poor) before untried ones, then
    the lower index.

Record fields: ``tree``, ``path`` (``"<tree key>/<leaf id>"``), ``t``, ``length`` (L),
``node``, ``persona_id``, ``seed``, ``turns``, ``observation``, ``action``,
``strategy``, ``reward`` (:math:`r_{t+1}`, the search's step reward of the edge
:math:`s_t \to s_{t+1}`), ``cum_reward`` (:math:`C(s_t)`, step rewards root ->
:math:`s_t`), ``value`` (:math:`V(s_t)`), ``visits`` (:math:`N(s_t)`), ``q``
(:math:`Q(s_t,a_t)`), ``n_sa`` (:math:`N(s_t,a_t)`), ``q_all`` / ``visits_all`` (per
strategy; ``None`` / 0 where untried), ``prior``, ``preferred``, ``negative``, ``done``,
``success``, ``gave_up``, ``last``, ``discount`` (:math:`\gamma` of ``cum_reward``) and
``path_return`` (:math:`C(s_L) + \gamma^L V(s_L)`: the search's estimate of the return of
dialogues through the leaf, :math:`V(s_L)` being discounted from step :math:`L`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from esc_env.fileio import read_jsonl, write_jsonl_atomic
from .mcts import state_turns
from .tree import Node, Tree


def preferred_action(tree: Tree, node: Node) -> int | None:
    """The tried strategy with the highest Q (ties: more visits, then lower index)."""
    best, best_key = None, None
    for a, c in sorted(node.children.items()):
        child = tree.nodes[c]
        key = (child.q, child.visits, -a)
        if best_key is None or key > best_key:
            best, best_key = a, key
    return best


def negative_action(tree: Tree, node: Node, preferred: int | None) -> int | None:
    """A low-prior strategy other than ``preferred`` (see the module docstring)."""
    if preferred is None:
        return None
    n = tree.n_strategies
    prior = node.prior if node.prior is not None else [1.0 / n] * n
    best, best_key = None, None
    for a in range(n):
        if a == preferred:
            continue
        q = tree.nodes[node.children[a]].q if a in node.children else float("inf")
        key = (round(float(prior[a]), 12), q, a)
        if best_key is None or key < best_key:
            best, best_key = a, key
    return best


def best_path(tree: Tree) -> list[Node]:
    """The path that follows ``preferred`` strategies from the root."""
    path = [tree.root]
    while path[-1].children:
        a = preferred_action(tree, path[-1])
        path.append(tree.nodes[path[-1].children[a]])
    return path


def path_records(tree: Tree, path: Sequence[Node], discount: float = 1.0) -> list[dict]:
    """The ``len(path)`` prefix records of one root-to-leaf path."""
    n = tree.n_strategies
    leaf = path[-1]
    cum = 0.0
    scale = 1.0
    rows = []
    c_leaf = tree.cumulative_reward(leaf.id, discount)
    u_leaf = c_leaf + discount ** (len(path) - 1) * leaf.value
    for t, node in enumerate(path):
        if t > 0:
            cum += scale * node.reward
            scale *= discount
        last = t == len(path) - 1
        nxt = None if last else path[t + 1]
        pref = preferred_action(tree, node)
        q_all: list[float | None] = [None] * n
        v_all = [0] * n
        for a, c in node.children.items():
            q_all[a] = tree.nodes[c].q
            v_all[a] = tree.nodes[c].visits
        rows.append(
            {
                "tree": tree.key,
                "path": f"{tree.key}/{leaf.id}",
                "t": t,
                "length": len(path) - 1,
                "node": node.id,
                "persona_id": tree.persona_id,
                "seed": tree.seed,
                "turns": state_turns(node.state),
                "observation": node.observation,
                "action": None if last else int(nxt.action),
                "strategy": None if last else tree.strategies[int(nxt.action)],
                "reward": None if last else float(nxt.reward),
                "cum_reward": float(cum),
                "value": float(node.value),
                "visits": int(node.visits),
                "q": None if last else float(nxt.q),
                "n_sa": None if last else int(nxt.visits),
                "q_all": q_all,
                "visits_all": v_all,
                "prior": list(node.prior) if node.prior is not None else [1.0 / n] * n,
                "preferred": pref,
                "negative": negative_action(tree, node, pref),
                "done": node.done,
                "success": node.success,
                "gave_up": node.gave_up,
                "last": last,
                "discount": float(discount),
                "path_return": float(u_leaf),
            }
        )
    return rows


def extract_records(trees: Iterable[Tree], paths: str = "all", discount: float | None = None) -> list[dict]:
    """Prefix records of ``trees``.

    Args:
        trees: searched trees.
        paths: ``"all"`` (every root-to-leaf path) or ``"best"`` (one path per tree,
            following the preferred strategy).
        discount: discount of the cumulative reward; default: each tree's search config.
    """
    if paths not in ("all", "best"):
        raise ValueError(f"paths must be 'all' or 'best', got {paths!r}")
    rows: list[dict] = []
    for tree in trees:
        d = float(tree.config.get("discount", 1.0)) if discount is None else float(discount)
        chosen = [best_path(tree)] if paths == "best" else list(tree.paths())
        for path in chosen:
            if len(path) < 2:
                continue
            rows.extend(path_records(tree, path, d))
    return rows


def write_records(path: str | Path, records: Iterable[dict]) -> Path:
    """Write records as JSONL (atomically)."""
    return write_jsonl_atomic(path, records)


def read_records(path: str | Path) -> list[dict]:
    return read_jsonl(path)


def group_paths(records: Iterable[dict]) -> list[list[dict]]:
    """Records regrouped into paths (each sorted by ``t``), in first-appearance order."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["path"], []).append(r)
    out = []
    for rows in groups.values():
        rows = sorted(rows, key=lambda r: r["t"])
        if [r["t"] for r in rows] != list(range(len(rows))):
            raise ValueError(f"path {rows[0]['path']} has missing or repeated steps")
        out.append(rows)
    return out


def summary(records: Sequence[dict]) -> dict:
    """Counts for logs: records, paths, trees, mean path length and return."""
    paths = group_paths(records)
    return {
        "records": len(records),
        "paths": len(paths),
        "trees": len({r["tree"] for r in records}),
        "mean_length": float(np.mean([p[0]["length"] for p in paths])) if paths else 0.0,
        "mean_path_return": float(np.mean([p[0]["path_return"] for p in paths])) if paths else 0.0,
    }
