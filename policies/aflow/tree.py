"""The search tree of one dialogue: plain data, saved as one JSON file.

A node is a dialogue prefix, i.e. a decision state :math:`s_t`; the edge into it is the
support strategy :math:`a_{t-1}` chosen in its parent.  Every number the search keeps is
on the node, so a tree file is all that trajectory extraction needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from esc_env.fileio import jsonable, write_json_atomic

TREE_FORMAT_VERSION = 1


@dataclass
class Node:
    """One decision state of a search tree.

    Attributes:
        id: index of the node in :attr:`Tree.nodes` (the root is 0).
        parent: the parent's id (``None`` for the root).
        action: the strategy index on the edge from the parent (``None`` for the root).
        depth: supporter turns between the root and this node.
        state: the environment state (``env.unwrapped.get_state()`` / ``Transition.state``).
        observation: the observation of ``state``, with arrays as lists.
        reward: the search's step reward of the edge into this node (see
            :func:`policies.aflow.mcts.make_step_reward`).
        env_reward: the environment's own reward of that edge.
        terminated, truncated: the episode ended at this node.
        success, gave_up: how it ended (relief / the seeker gave up).
        info: the step's ``info`` (without ``usage``).
        prior: the prior over strategies at this node, length ``n_strategies``
            (``None`` until computed; never needed for finished nodes).
        children: strategy index -> child id.
        visits: :math:`N(s)`, simulations that passed through this node; it is also
            :math:`N(s_{parent}, a)` of the edge into it.
        q: :math:`Q(s_{parent}, a)`, the running mean of the return from the parent through
            this edge.
        value: :math:`V(s)`, the running mean of the return from this node.
        leaf_value: the value estimate made when the node was a leaf (rollout); 0 for
            finished nodes; ``None`` for nodes created in the middle of a random path.
        rollout: what the rollout from this node did (actions, step rewards, gave_up).
    """

    id: int
    parent: int | None
    action: int | None
    depth: int
    state: dict
    observation: dict
    reward: float = 0.0
    env_reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    success: bool = False
    gave_up: bool = False
    info: dict = field(default_factory=dict)
    prior: list[float] | None = None
    children: dict[int, int] = field(default_factory=dict)
    visits: int = 0
    q: float = 0.0
    value: float = 0.0
    leaf_value: float | None = None
    rollout: dict | None = None

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def to_dict(self) -> dict:
        d = asdict(self)
        d["children"] = {str(a): c for a, c in sorted(self.children.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Node":
        d = dict(d)
        d["children"] = {int(a): int(c) for a, c in d.get("children", {}).items()}
        return cls(**d)


@dataclass
class Tree:
    """The search tree of one (persona, seed) start.

    Attributes:
        key: the file-name-safe identifier ``persona__seedN``.
        persona_id: the persona of the root (``None``: the env drew one).
        seed: the ``reset`` seed of the root.
        strategies: the strategy names, in action order.
        config: the :class:`~policies.aflow.mcts.MCTSConfig` as a dict.
        nodes: all nodes, root first; ``nodes[i].id == i``.
        complete: the search finished (only complete trees are saved by the search).
    """

    key: str
    persona_id: str | None
    seed: int
    strategies: list[str]
    config: dict
    nodes: list[Node] = field(default_factory=list)
    complete: bool = False

    # ---- structure -------------------------------------------------------------------
    @property
    def root(self) -> Node:
        return self.nodes[0]

    @property
    def n_strategies(self) -> int:
        return len(self.strategies)

    def add(self, node: Node) -> Node:
        if node.id != len(self.nodes):
            raise ValueError(f"node id {node.id} must be the next index {len(self.nodes)}")
        if node.parent is not None:
            parent = self.nodes[node.parent]
            if node.action in parent.children:
                raise ValueError(f"node {node.parent} already has a child for strategy {node.action}")
            parent.children[int(node.action)] = node.id
        self.nodes.append(node)
        return node

    def path_to(self, node_id: int) -> list[Node]:
        """Nodes from the root to ``node_id``, both included."""
        out = []
        n: Node | None = self.nodes[node_id]
        while n is not None:
            out.append(n)
            n = self.nodes[n.parent] if n.parent is not None else None
        return out[::-1]

    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if not n.children]

    def paths(self) -> Iterator[list[Node]]:
        """Every root-to-leaf path (a leaf has no children), in node-id order of the leaves."""
        for leaf in self.leaves():
            if leaf.parent is None:
                continue  # a tree that never expanded has no path with a decision
            yield self.path_to(leaf.id)

    def cumulative_reward(self, node_id: int, discount: float = 1.0) -> float:
        """:math:`C(s)`: the discounted sum of step rewards from the root to ``node_id``."""
        total, scale = 0.0, 1.0
        for n in self.path_to(node_id)[1:]:
            total += scale * n.reward
            scale *= discount
        return total

    # ---- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": "aflow-tree",
            "version": TREE_FORMAT_VERSION,
            "key": self.key,
            "persona_id": self.persona_id,
            "seed": int(self.seed),
            "strategies": list(self.strategies),
            "config": self.config,
            "complete": bool(self.complete),
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Tree":
        if d.get("format") != "aflow-tree":
            raise ValueError("not an AFlow tree file (missing format='aflow-tree')")
        if d.get("version") != TREE_FORMAT_VERSION:
            raise ValueError(f"tree format version {d.get('version')} is not supported (expected {TREE_FORMAT_VERSION})")
        return cls(
            key=d["key"],
            persona_id=d["persona_id"],
            seed=int(d["seed"]),
            strategies=list(d["strategies"]),
            config=dict(d["config"]),
            nodes=[Node.from_dict(n) for n in d["nodes"]],
            complete=bool(d.get("complete", False)),
        )

    def to_json(self) -> str:
        return json.dumps(jsonable(self.to_dict()), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Tree":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write the tree as JSON (atomically: temp file + rename)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Tree":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def tree_key(persona_id: str | None, seed: int) -> str:
    """A file-name-safe key for the tree of (persona, seed)."""
    pid = "any" if persona_id is None else "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(persona_id))
    return f"{pid}__seed{int(seed)}"


def as_jsonable(x: Any) -> Any:
    return jsonable(x)
