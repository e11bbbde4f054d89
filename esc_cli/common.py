"""What several commands share: the user-error type, the one-line parser, environment and
policy options, output folders."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, NoReturn

from agents.errors import UserInputError

STAGE_ID = "esc_env/ESCStage-v0"
LLM_ID = "esc_env/ESC-v0"


class UserError(UserInputError):
    """A mistake in the command line or its files: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive(name: str, value: int) -> None:
    """Raise a :class:`UserError` unless ``value >= 1``."""
    if value < 1:
        raise UserError(f"{name} must be >= 1, got {value}")


def strategy_set(spec: str):
    """The strategy set ``--strategies`` names (:func:`agents.strategies.get_strategy_set`)."""
    from agents.strategies import get_strategy_set

    try:
        return get_strategy_set(spec)
    except ValueError as e:
        raise UserError(f"--strategies: {e}") from None


def check_policy_spec(spec: str, strategies: str) -> None:
    """Cheap checks of a policy spec before any model is loaded (unknown kind, strategy name, files)."""
    from .policy_specs import POLICY_SPEC_HELP

    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if spec.lower() in ("random", "llm", "llm-sample"):
        strategy_set(strategies)
        return
    if kind == "fixed" and rest:
        sset = strategy_set(strategies)
        if rest.strip().isdigit():
            if not 0 <= int(rest) < len(sset):
                raise UserError(f"policy {spec!r}: strategy index out of range [0, {len(sset) - 1}]")
            return
        if rest.strip().lower() not in [n.lower() for n in sset.names]:
            raise UserError(f"policy {spec!r}: strategy {rest!r} is not in the {sset.name!r} set; known: {sset.names}")
        return
    if kind in ("sb3", "aflow", "rlff") and rest:
        if not Path(rest).exists():
            raise UserError(f"{kind} checkpoint not found: {rest}")
        return
    raise UserError(f"unknown policy {spec!r}; expected {POLICY_SPEC_HELP}")


def is_llm_env(env_id: str) -> bool:
    """Whether ``env_id`` is one of the LLM environments (they have a vector entry point)."""
    from gymnasium.envs.registration import registry

    import esc_env  # noqa: F401

    return env_id in registry and registry[env_id].vector_entry_point is not None


def env_kwargs(args: argparse.Namespace) -> dict:
    """The environment keyword arguments of ``--judges``, ``--affect-judge`` and ``--env-kwargs``."""
    kw: dict = {}
    if getattr(args, "judges", None):
        kw["judges"] = tuple(j.strip() for j in args.judges.split(",") if j.strip())
    if getattr(args, "affect_judge", None):
        kw["affect_judge"] = args.affect_judge
    if getattr(args, "env_kwargs", None):
        try:
            extra = json.loads(args.env_kwargs)
        except json.JSONDecodeError as e:
            raise UserError(f"--env-kwargs is not valid JSON: {e}") from None
        if not isinstance(extra, dict):
            raise UserError("--env-kwargs must be a JSON object")
        kw.update(extra)
    return kw


def make_envs(args: argparse.Namespace):
    """The evaluation environments of the env options; what the environments refuse is a :class:`UserError`."""
    from esc_env.evaluation.interactive import make_eval_envs

    positive("--num-envs", args.num_envs)
    positive("--max-turns", args.max_turns)
    llm = is_llm_env(args.env_id)
    kw = env_kwargs(args)
    if not llm and "judges" in kw:
        raise UserError(f"--judges needs an LLM environment; {args.env_id} has no judges")
    if not llm and "affect_judge" in kw:
        raise UserError(f"--affect-judge needs an LLM environment; {args.env_id} has no judges")
    if args.personas is not None and Path(args.personas).suffix and not Path(args.personas).exists() and ":" not in args.personas:
        raise UserError(f"persona file not found: {args.personas}")
    strategy_set(args.strategies)
    # the environments check their options (env id, keyword arguments, judge and backend specs,
    # persona files) when they are built: what they refuse here is the user's input
    try:
        return make_eval_envs(args.env_id, min(args.num_envs, args.episodes), max_turns=args.max_turns, personas=args.personas,
                              backend=(args.backend if llm else None), strategies=args.strategies, **kw)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read personas {args.personas!r}: {e}") from None
    except TypeError as e:  # an --env-kwargs key the environment does not take
        raise UserError(f"{args.env_id}: {e}") from None
    except (ValueError, ImportError) as e:  # e.g. a bad --affect-judge or env id
        raise UserError(f"{args.env_id}: {e}") from None


def load_policy_for(spec: str, envs, args: argparse.Namespace):
    """The policy ``spec`` names, for the environments ``envs`` (:func:`esc_cli.policy_specs.load_policy`)."""
    from .policy_specs import load_policy

    engine = envs.engine
    supporter = getattr(engine, "supporter", None) if engine is not None else None
    return load_policy(spec, strategies=envs.strategies, observation_space=envs.observation_space, action_space=envs.action_space,
                       supporter=supporter, backend=args.backend, seed=args.seed)


def add_env_options(p: argparse.ArgumentParser, episodes: int) -> None:
    """The environment options of ``rollout`` and ``evaluate``."""
    from agents.backends import SPEC_HELP

    p.add_argument("--env-id", default=LLM_ID, help=f"environment id: {LLM_ID} (LLM seeker), {STAGE_ID} (no LLM), esc_env/ESCText-v0 (default: %(default)s)")
    p.add_argument("--backend", default="embedded", help=f"backend of LLM environments and of the llm policy: {SPEC_HELP} (default: %(default)s)")
    p.add_argument("--personas", default=None, help="persona source: builtin | esconv:valid | esconv:train | FILE (default: the environment's own)")
    p.add_argument("--strategies", default="esconv", help="strategy set: esconv | aflow (default: %(default)s)")
    p.add_argument("--episodes", type=int, default=episodes, help="number of episodes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="episode k is reset with seed SEED+k (default: %(default)s)")
    p.add_argument("--max-turns", type=int, default=10, help="supporter turns per episode (default: %(default)s)")
    p.add_argument("--num-envs", type=int, default=8, help="conversations run in one batch (default: %(default)s)")
    p.add_argument("--judges", default=None, help="LLM env judges, comma-separated from affect,rubric,outcome (default: affect)")
    p.add_argument("--affect-judge", default=None,
                   help="LLM env affect judge: auto | prompted | calibrated | calibrated:NAME_OR_PATH (default: auto, "
                        "the calibrated judge when the encoder extra is installed)")
    p.add_argument("--env-kwargs", default=None, help="further environment keyword arguments as a JSON object")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def add_config_option(p: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml``: option values from a file (see :func:`esc_cli.config.apply_config`)."""
    p.add_argument("--config", default=None, metavar="FILE.yaml",
                   help="YAML file of option values (keys: the long option names, e.g. episodes, env_id, policy); "
                        "options on the command line take precedence")


def run_dir_name(spec: str, taken: set[str]) -> str:
    """A run folder name for ``spec``, unique among ``taken`` (which it joins)."""
    from .policy_specs import policy_slug

    base = policy_slug(spec)
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def default_out(prefix: str) -> Path:
    """``runs/<prefix>-<time>``."""
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The option values of a command, for its ``run.json``."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "argv", "_subparsers")}
