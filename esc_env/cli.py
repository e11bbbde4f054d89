"""The ``esc-env`` command line.

======================  =====================================================================
command                 what it does
======================  =====================================================================
``demo``                a few short episodes on the embedded model, transcripts printed
``rollout``             run a policy for N episodes and write the transcripts (JSONL)
``evaluate``            interactive evaluation of one or more policies: metrics with 95% CIs,
                        transcripts, run record, TensorBoard scalars, optional PNG plots
``evaluate-ref``        reference-based evaluation on ESConv (strategy accuracy/F1, BLEU,
                        ROUGE-L, METEOR, Distinct-n, perplexity)
``compare``             one table over several saved runs (and optional plots)
``train``               ``aflow | rlff | ppo --config FILE.yaml``: dispatch to a trainer
======================  =====================================================================

Policies are named by spec strings: ``random``, ``fixed:<strategy>``, ``llm``,
``sb3:<model.zip>``, ``aflow:<checkpoint dir>``, ``rlff:<checkpoint dir>`` (see
:mod:`esc_env.evaluation.policies`).

Errors print one line and no traceback:

* user errors (bad options, missing files, unknown policies or config keys): exit code 2;
* backend errors (:class:`agents.backends.BackendError`: a server that cannot be reached,
  an engine that cannot start, a model that cannot be loaded or a prompt it cannot take):
  the message names the URL or spec; exit code 1.

Anything else is a bug and keeps its traceback.  Inside a trainer (``esc-env train``) only
backend errors and missing files are one line: a ``ValueError`` raised while training is
more likely a bug than a mistake in the config, whose keys and values were checked before.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

STAGE_ID = "esc_env/ESCStage-v0"
LLM_ID = "esc_env/ESC-v0"


class UserError(Exception):
    """A mistake in the command line or its files: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- demo
def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from agents.seeker import DEFAULT_SEEKER_PARAMS
    from esc_env.env import ESCEnv
    from esc_env.evaluation.dialogue_quality import degenerate_share

    t0 = time.perf_counter()
    print(f"esc-env demo: backend={args.backend} personas={args.personas} episodes={args.episodes} max_turns={args.max_turns}", flush=True)
    env = ESCEnv(args.backend, personas=args.personas, max_turns=args.max_turns, render_mode="ansi",
                 seeker_params=DEFAULT_SEEKER_PARAMS.replace(temperature=args.temperature))
    load_s = time.perf_counter() - t0
    print(f"affect judge: {env.affect_judge!r}", flush=True)
    rng = np.random.default_rng(args.seed)
    returns, lengths, successes, gave_up, deltas, utterances = [], [], [], [], [], []
    for ep in range(args.episodes):
        obs, info = env.reset(seed=args.seed + ep)
        done, ret = False, 0.0
        while not done:
            action = int(rng.integers(env.action_space.n))
            obs, reward, terminated, truncated, info = env.step(action)
            ret += reward
            done = terminated or truncated
        print(f"\n=== episode {ep + 1}/{args.episodes} ===")
        print(env.render())
        st = env.unwrapped.state
        returns.append(ret)
        lengths.append(st.turn)
        successes.append(st.success)
        gave_up.append(st.gave_up)
        deltas.append(st.intensities[-1] - st.intensities[0])
        utterances += [t.text for t in st.turns]
    usage = env.engine.seeker.backend.usage
    total = time.perf_counter() - t0
    print(
        f"\nmetrics: episodes={len(returns)} mean_return={np.mean(returns):+.3f} success_rate={np.mean(successes):.2f} "
        f"give_up_rate={np.mean(gave_up):.2f} avg_turns={np.mean(lengths):.1f} mean_intensity_change={np.mean(deltas):+.2f} "
        f"degenerate_share={degenerate_share(utterances):.2f} "
        f"tokens={usage.prompt_tokens + usage.completion_tokens} load_s={load_s:.1f} total_s={total:.1f}"
    )
    return 0


# ----------------------------------------------------------------------------- shared helpers
def _positive(name: str, value: int) -> None:
    if value < 1:
        raise UserError(f"{name} must be >= 1, got {value}")


def _check_policy_spec(spec: str, strategies: str) -> None:
    """Cheap checks of a policy spec before any model is loaded (unknown kind, strategy name, files)."""
    from agents.strategies import get_strategy_set
    from esc_env.evaluation.policies import POLICY_SPEC_HELP

    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if spec.lower() in ("random", "llm", "llm-sample"):
        return
    if kind == "fixed" and rest:
        sset = get_strategy_set(strategies)
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


def _is_llm_env(env_id: str) -> bool:
    from gymnasium.envs.registration import registry

    import esc_env  # noqa: F401

    return env_id in registry and registry[env_id].vector_entry_point is not None


def _env_kwargs(args: argparse.Namespace) -> dict:
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


def _make_envs(args: argparse.Namespace):
    from esc_env.evaluation.interactive import make_eval_envs

    _positive("--num-envs", args.num_envs)
    _positive("--max-turns", args.max_turns)
    llm = _is_llm_env(args.env_id)
    kw = _env_kwargs(args)
    if not llm and "judges" in kw:
        raise UserError(f"--judges needs an LLM environment; {args.env_id} has no judges")
    if not llm and "affect_judge" in kw:
        raise UserError(f"--affect-judge needs an LLM environment; {args.env_id} has no judges")
    if args.personas is not None and Path(args.personas).suffix and not Path(args.personas).exists() and ":" not in args.personas:
        raise UserError(f"persona file not found: {args.personas}")
    try:
        return make_eval_envs(args.env_id, min(args.num_envs, args.episodes), max_turns=args.max_turns, personas=args.personas,
                              backend=(args.backend if llm else None), strategies=args.strategies, **kw)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read personas {args.personas!r}: {e}") from None
    except TypeError as e:  # an --env-kwargs key the environment does not take
        raise UserError(f"{args.env_id}: {e}") from None
    except (ValueError, ImportError, FileNotFoundError) as e:  # e.g. a bad --affect-judge
        raise UserError(f"{args.env_id}: {e}") from None


def _load_policy(spec: str, envs, args: argparse.Namespace):
    from esc_env.evaluation.policies import load_policy

    engine = envs.engine
    supporter = getattr(engine, "supporter", None) if engine is not None else None
    return load_policy(spec, strategies=envs.strategies, observation_space=envs.observation_space, action_space=envs.action_space,
                       supporter=supporter, backend=args.backend, seed=args.seed)


def _add_env_options(p: argparse.ArgumentParser, episodes: int) -> None:
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


def _run_dir_name(spec: str, taken: set[str]) -> str:
    from esc_env.evaluation.policies import policy_slug

    base = policy_slug(spec)
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def _default_out(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _config(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("func", "argv", "_subparsers")}


# ----------------------------------------------------------------------------- rollout
def _rollout(args: argparse.Namespace) -> int:
    from esc_env.evaluation.interactive import run_episodes
    from esc_env.recording import EpisodeRecorder
    from esc_env.env import render_transcript
    from esc_env.state import EpisodeState

    _positive("--episodes", args.episodes)
    _check_policy_spec(args.policy, args.strategies)
    out = Path(args.out) if args.out else _default_out("rollout").with_suffix(".jsonl")
    if out.exists() and not args.append:
        raise UserError(f"{out} exists; pass --append to add to it or choose another --out")
    envs = _make_envs(args)
    try:
        policy = _load_policy(args.policy, envs, args)
        recorder = EpisodeRecorder(out)

        def write(rec: dict) -> None:
            recorder.write(rec)
            if args.show:
                text = render_transcript(EpisodeState.from_dict(rec["episode"]))
                print(f"\n=== episode {rec['episode_index']} (seed {rec['reset_seed']}) ===\n{text}", flush=True)

        eps = run_episodes(policy, envs, args.episodes, args.seed, on_episode=write, progress=not args.no_progress,
                           extra={"policy": args.policy, "env_id": args.env_id})
    finally:
        envs.close()
    n_succ = sum(e["success"] for e in eps)
    print(f"esc-env rollout: {len(eps)} episodes of {args.policy} on {args.env_id} -> {out} "
          f"(success {n_succ}/{len(eps)}, mean return {sum(e['return'] for e in eps) / len(eps):+.3f})")
    return 0


# ----------------------------------------------------------------------------- evaluate
def _evaluate(args: argparse.Namespace) -> int:
    from esc_env.evaluation.interactive import evaluate_policy, format_compare_table, format_metrics_table
    from esc_env.evaluation.runs import run_info, write_json, write_tensorboard
    from esc_env.recording import EpisodeRecorder

    _positive("--episodes", args.episodes)
    if not 0.0 < args.confidence < 1.0:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    specs = args.policy
    for spec in specs:
        _check_policy_spec(spec, args.strategies)
    out = Path(args.out) if args.out else _default_out("eval")
    taken: set[str] = set()
    names = [_run_dir_name(s, taken) for s in specs]
    for n in names:
        if (out / n / "metrics.json").exists() and not args.overwrite:
            raise UserError(f"{out / n} already holds a run; pass --overwrite or choose another --out")
    envs = _make_envs(args)
    runs: list[tuple[str, dict]] = []
    try:
        policies = [_load_policy(s, envs, args) for s in specs]  # every spec checked before any episode
        for spec, name, policy in zip(specs, names, policies):
            run_dir = out / name
            run_dir.mkdir(parents=True, exist_ok=True)
            episodes_file = run_dir / "episodes.jsonl"
            if episodes_file.exists():
                episodes_file.unlink()
            recorder = EpisodeRecorder(episodes_file)
            t0 = time.perf_counter()
            res = evaluate_policy(policy, envs, args.episodes, args.seed, on_episode=recorder.write,
                                  progress=not args.no_progress, confidence=args.confidence,
                                  extra={"policy": spec, "env_id": args.env_id})
            seconds = time.perf_counter() - t0
            res.metrics["policy"] = spec
            res.metrics["env_id"] = args.env_id
            write_json(run_dir / "metrics.json", res.metrics)
            write_json(run_dir / "run.json", run_info(
                "evaluate", args.argv, _config(args), name=name, policy=spec, env_id=args.env_id,
                seeds=[e["reset_seed"] for e in res.episodes], persona_ids=[e["persona_id"] for e in res.episodes],
                strategies=list(envs.strategies.names), seconds=seconds,
                affect_judge=repr(envs.engine.affect_judge) if envs.engine is not None else None,
            ))
            write_tensorboard(out / "tb" / name, res.metrics, res.episodes)
            runs.append((spec if specs.count(spec) == 1 else name, res.metrics))
            print(format_metrics_table(res.metrics, f"== {spec} on {args.env_id}: {args.episodes} episodes, seeds "
                                                    f"{args.seed}..{args.seed + args.episodes - 1} ({seconds:.1f} s) =="))
            print()
    finally:
        envs.close()
    if len(runs) > 1:
        print(format_compare_table(runs))
    if args.plots:
        from esc_env.evaluation.plots import plot_all

        for p in plot_all(runs, out / "plots"):
            print(f"plot: {p}")
    print(f"results: {out} (metrics.json, episodes.jsonl, run.json per policy; TensorBoard: tensorboard --logdir {out / 'tb'})")
    return 0


# ----------------------------------------------------------------------------- evaluate-ref
def _evaluate_ref(args: argparse.Namespace) -> int:
    from esc_env.evaluation.reference import evaluate_reference, format_reference_table, reference_points
    from esc_env.evaluation.runs import run_info, write_json

    _check_policy_spec(args.policy, args.strategies)
    if args.limit is not None:
        _positive("--limit", args.limit)
    _positive("--batch-size", args.batch_size)
    points = reference_points(args.split, strategies=args.strategies, limit=args.limit, max_per_dialogue=args.max_per_dialogue,
                              data_dir=args.data_dir)
    if not points:
        raise UserError(f"no supporter turns in ESConv {args.split!r}")
    from agents.strategies import get_strategy_set
    from esc_env.spaces import action_space, observation_space
    from esc_env.evaluation.policies import load_policy

    sset = get_strategy_set(args.strategies)
    needs_llm = not args.no_generate or not args.no_ppl or args.policy.lower().startswith("llm")
    supporter = None
    if needs_llm and args.backend.lower() != "none":
        from agents.supporter import SupporterAgent
        from esc_env.build import shared_backend

        supporter = SupporterAgent(shared_backend(args.backend), sset)
    policy = load_policy(args.policy, strategies=sset, observation_space=observation_space(len(sset), 10),
                         action_space=action_space("strategy", len(sset)), supporter=supporter, backend=args.backend, seed=args.seed)
    t0 = time.perf_counter()
    metrics, preds = evaluate_reference(policy, points, sset, supporter=supporter, generate=not args.no_generate,
                                        ppl=not args.no_ppl, meteor=not args.no_meteor, batch_size=args.batch_size,
                                        progress=not args.no_progress, seed=args.seed)
    seconds = time.perf_counter() - t0
    metrics.update(policy=args.policy, split=args.split)
    print(format_reference_table(metrics, f"== {args.policy} on ESConv {args.split}: {len(points)} supporter turns ({seconds:.1f} s) =="))
    if args.out:
        out = Path(args.out)
        write_json(out / "metrics_ref.json", metrics)
        from esc_env.recording import EpisodeRecorder

        pfile = out / "predictions.jsonl"
        if pfile.exists():
            pfile.unlink()
        rec = EpisodeRecorder(pfile)
        for p in preds:
            rec.write(p)
        write_json(out / "run.json", run_info("evaluate-ref", args.argv, _config(args), policy=args.policy,
                                              point_ids=[p.id for p in points], seconds=seconds))
        print(f"results: {out} (metrics_ref.json, predictions.jsonl, run.json)")
    return 0


# ----------------------------------------------------------------------------- compare
def _compare(args: argparse.Namespace) -> int:
    from esc_env.evaluation.interactive import format_compare_table
    from esc_env.evaluation.runs import find_runs, load_run, write_json

    runs = [load_run(p) for p in find_runs(args.runs)]
    names: list[str] = []
    for r in runs:  # runs of different folders may share a policy name
        n = r["name"]
        if n in names:
            n = f"{Path(r['path']).parent.name}/{n}"
        names.append(n)
    pairs = [(n, r["metrics"]) for n, r in zip(names, runs)]
    print(format_compare_table(pairs))
    if args.json:
        write_json(args.json, {n: r["metrics"] for n, r in zip(names, runs)})
        print(f"json: {args.json}")
    if args.plots:
        from esc_env.evaluation.plots import plot_all

        for p in plot_all(pairs, args.plots):
            print(f"plot: {p}")
    return 0


# ----------------------------------------------------------------------------- train
#: the trainer of each algorithm: a module name, or a script relative to the repository.  A trainer
#: offers ``train_from_config(config: dict)`` (with ``CONFIG_KEYS`` or a ``TrainConfig`` dataclass
#: naming its keys), or an argparse ``parse_args(argv)`` + ``main(argv)`` whose long options are
#: the config keys (given as ``--config FILE`` when it takes one, else as ``--key value`` flags).
TRAINERS: dict[str, str] = {
    "aflow": "examples/train_aflow.py",
    "rlff": "examples/train_rlff.py",
    "ppo": "examples/train_ppo_sb3.py",
}


def _trainer_module(kind: str):
    target = TRAINERS[kind]
    if target.endswith(".py"):
        path = Path(__file__).resolve().parents[1] / target
        if not path.is_file():
            raise UserError(f"{kind} training is not available: {path} not found (it ships with the source tree)")
        spec = importlib.util.spec_from_file_location(f"esc_env_trainer_{kind}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and target.startswith(e.name):
            raise UserError(f"{kind} training is not available: the module {target} is not installed") from None
        raise


def load_config(path: "str | Path") -> dict:
    """A YAML (or JSON) config file as a dict; errors name the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read config {p}: {e}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise UserError(f"config {p} is not valid YAML{line}: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"config {p} must be a mapping of keys to values, got {type(data).__name__}")
    return data


def check_config_keys(config: dict, known: "Sequence[str] | set[str]", where: str, dashes: bool = False) -> None:
    """Raise a :class:`UserError` naming the first unknown key (with the closest known one).

    With ``dashes``, ``-`` and ``_`` are the same in keys (``env-id`` is ``env_id``).
    """
    import difflib

    known = set(known)
    for key in config:
        k = str(key).replace("-", "_") if dashes else key
        if k not in known:
            close = difflib.get_close_matches(str(k), sorted(known), n=1)
            if close and dashes and "-" in str(key):
                close = [close[0].replace("_", "-")]
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {sorted(known)}"
            raise UserError(f"unknown config key {key!r} in {where}{hint}")


def _known_keys(module: Any) -> set[str] | None:
    keys = getattr(module, "CONFIG_KEYS", None)
    if keys is not None:
        return set(keys)
    cls = getattr(module, "TrainConfig", None)
    if cls is not None:
        import dataclasses

        if dataclasses.is_dataclass(cls):
            return {f.name for f in dataclasses.fields(cls)}
    return None


def _argparse_keys(parse: Callable) -> set[str]:
    """The long options of an argparse-based ``parse_args`` (read from its ``--help``), as config keys."""
    import contextlib
    import io
    import re

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            parse(["--help"])
    except SystemExit:
        pass
    return {m.replace("-", "_") for m in re.findall(r"(?<![\w-])--([a-z0-9][a-z0-9-]*)", out.getvalue())} - {"help"}


def _argparse_check(parse: Callable, argv: list[str], where: str) -> None:
    """Run an argparse-based trainer's ``parse_args(argv)`` quietly; its complaint becomes one line."""
    import contextlib
    import io
    import re

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse(argv)
    except SystemExit as e:
        if e.code in (0, None):
            return
        text = err.getvalue().strip().splitlines()
        last = text[-1] if text else f"exit code {e.code}"
        m = re.search(r"unrecognized arguments: --?(\S+)", last)
        if m:
            raise UserError(f"unknown config key {m.group(1).replace('-', '_')!r} in {where}") from None
        m = re.search(r"argument --(\S+?)(?:/\S+)?: (.*)$", last)
        if m:
            raise UserError(f"config key {m.group(1).replace('-', '_')!r} in {where}: {m.group(2)}") from None
        raise UserError(f"{where}: {last.split('error: ', 1)[-1]}") from None


def _train(args: argparse.Namespace) -> int:
    import re

    config = load_config(args.config)
    module = _trainer_module(args.algorithm)
    known = _known_keys(module)
    fn: Callable | None = getattr(module, "train_from_config", None)
    parse = getattr(module, "parse_args", None)
    argv: list[str] = []
    if known is not None:
        check_config_keys(config, known, str(args.config))
    elif fn is None and callable(parse):
        options = _argparse_keys(parse)
        # exact keys ('-' or '_'): argparse itself would accept an abbreviation such as total_timestep
        check_config_keys(config, options - {"config"}, str(args.config), dashes=True)
        argv = ["--config", str(args.config)] if "config" in options else _config_to_argv(config)
        _argparse_check(parse, argv, str(args.config))
    else:
        raise UserError(f"the {args.algorithm} trainer has neither train_from_config(config) nor parse_args/main(argv)")
    if args.dry_run:
        print(f"esc-env train {args.algorithm}: {args.config} is valid ({len(config)} keys)")
        return 0
    try:
        if fn is not None:
            fn(config)
        else:
            module.main(argv)
    except TypeError as e:  # e.g. Config(**config) with a key it does not take
        m = re.search(r"unexpected keyword argument '([^']+)'", str(e))
        if m:
            raise UserError(f"unknown config key {m.group(1)!r} in {args.config}") from None
        raise
    except SystemExit as e:  # an argparse-based main() rejecting an option
        if e.code not in (0, None):
            raise UserError(f"the {args.algorithm} trainer rejected {args.config} (see the message above)") from None
    except Exception as e:  # the trainer's own code: main() decides what stays one line
        if not isinstance(e, UserError):
            setattr(e, _IN_TRAINER, True)
        raise
    return 0


def _config_to_argv(config: dict) -> list[str]:
    """``{"total_timesteps": 1000, "env_kwargs": {...}}`` -> ``["--total-timesteps", "1000", "--env-kwargs", "{...}"]``."""
    argv: list[str] = []
    for k, v in config.items():
        flag = "--" + str(k).replace("_", "-")
        if isinstance(v, bool):
            if v:
                argv.append(flag)
            continue
        if v is None:
            continue
        argv += [flag, json.dumps(v) if isinstance(v, (dict, list)) else str(v)]
    return argv


# ----------------------------------------------------------------------------- the parser
def _add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, metavar="FILE.yaml",
                   help="YAML file of option values (keys: the long option names, e.g. episodes, env_id, policy); "
                        "options on the command line take precedence")


def _apply_config(parser: argparse.ArgumentParser, sub: argparse.ArgumentParser, path: str, argv: list[str]) -> argparse.Namespace:
    """Re-parse ``argv`` with the values of a ``--config`` file as the sub-command's defaults."""
    import difflib

    config = load_config(path)
    actions = {a.dest: a for a in sub._actions if a.dest not in ("help", "config")}
    values: dict[str, Any] = {}
    for key, value in config.items():
        dest = str(key).replace("-", "_")
        action = actions.get(dest)
        if action is None:
            close = difflib.get_close_matches(dest, sorted(actions), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {sorted(actions)}"
            raise UserError(f"unknown config key {key!r} in {path}{hint}")
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise UserError(f"config key {key!r} in {path}: expected true or false, got {value!r}")
        elif isinstance(action, argparse._AppendAction):
            value = [str(v) for v in (value if isinstance(value, list) else [value])]
        elif value is not None and action.type is not None:
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                raise UserError(f"config key {key!r} in {path}: invalid {action.type.__name__} value {value!r}") from None
        elif value is not None and not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        values[dest] = value
    sub.set_defaults(**values)
    return parser.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    from esc_env.evaluation.policies import POLICY_SPEC_HELP

    parser = _Parser(prog="esc-env", description="Emotional-support conversation as an RL environment.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="run a few short episodes on the embedded model and print the transcripts")
    demo.add_argument("--backend", default="embedded", help="backend spec (embedded | hf:PATH | openai:URL#model | vllm:embedded | vllm:MODEL)")
    demo.add_argument("--personas", default="builtin", help="persona source (builtin | esconv:valid | esconv:train | FILE)")
    demo.add_argument("--episodes", type=int, default=3, help="number of episodes")
    demo.add_argument("--max-turns", type=int, default=4, help="supporter turns per episode")
    demo.add_argument("--temperature", type=float, default=0.7, help="seeker sampling temperature (0 = greedy)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(func=_demo)

    ro = sub.add_parser("rollout", help="run a policy for N episodes and write the transcripts as JSONL",
                        description="Run a policy for N seeded episodes and append each finished episode (transcript, "
                                    "intensity trace, strategies, rewards) to a JSONL file.")
    ro.add_argument("--policy", default=None, help=f"policy spec, required: {POLICY_SPEC_HELP}")
    _add_env_options(ro, episodes=4)
    ro.add_argument("--out", default=None, help="JSONL file of the episodes (default: runs/rollout-<time>.jsonl)")
    ro.add_argument("--append", action="store_true", help="append to an existing --out file")
    ro.add_argument("--show", action="store_true", help="print each transcript as its episode finishes")
    _add_config_option(ro)
    ro.set_defaults(func=_rollout)

    ev = sub.add_parser(
        "evaluate", help="interactive evaluation: metrics with 95%% CIs, transcripts, TensorBoard, plots",
        description="Run each policy for the same seeded episodes and report success rate, average turns (AT: failures "
                    "count as --max-turns), intensity change, return, give-up rate, rubric means (--judges affect,rubric), "
                    "strategy use and transitions, with confidence intervals (t-interval for means, Wilson for rates). "
                    "Writes OUT/<policy>/{metrics.json,episodes.jsonl,run.json}, OUT/tb/<policy> and, with --plots, OUT/plots/*.png.")
    ev.add_argument("--policy", action="append", default=None,
                    help=f"policy spec, required (repeat to compare several; adds to the config's list): {POLICY_SPEC_HELP}")
    _add_env_options(ev, episodes=20)
    ev.add_argument("--out", default=None, help="output folder (default: runs/eval-<time>)")
    ev.add_argument("--overwrite", action="store_true", help="replace runs already in --out")
    ev.add_argument("--plots", action="store_true", help="write PNG plots to OUT/plots")
    ev.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals (default: %(default)s)")
    _add_config_option(ev)
    ev.set_defaults(func=_evaluate)

    er = sub.add_parser(
        "evaluate-ref", help="reference-based evaluation on ESConv (strategy accuracy/F1, BLEU, ROUGE-L, METEOR, Distinct, PPL)",
        description="For each supporter turn of an ESConv split, the policy predicts the next strategy and a supporter LLM "
                    "(--backend) writes the utterance for it (unless the policy writes its own); both are compared with the "
                    "human turn.  See esc_env.evaluation.reference for the metrics and the ESConv->AFlow strategy mapping.")
    er.add_argument("--policy", default=None, help=f"policy spec, required: {POLICY_SPEC_HELP}")
    er.add_argument("--split", default="valid", help="ESConv split (train | valid) or a .jsonl/.json file (default: %(default)s)")
    er.add_argument("--data-dir", default=None, help="folder of the ESConv split files (default: $ESC_ENV_ESCONV_DIR or ../shared/data/esconv)")
    er.add_argument("--limit", type=int, default=None, help="use only the first N supporter turns")
    er.add_argument("--max-per-dialogue", type=int, default=None, help="at most N supporter turns per dialogue")
    er.add_argument("--strategies", default="esconv", help="the policy's strategy set: esconv | aflow (default: %(default)s)")
    er.add_argument("--backend", default="embedded", help="supporter LLM that writes utterances and scores perplexity, or 'none' (default: %(default)s)")
    er.add_argument("--no-generate", action="store_true", help="strategy metrics only: write no utterances")
    er.add_argument("--no-ppl", action="store_true", help="skip the perplexity of the human replies")
    er.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs WordNet)")
    er.add_argument("--batch-size", type=int, default=16, help="prefixes per batched call (default: %(default)s)")
    er.add_argument("--seed", type=int, default=0, help="seed of sampling policies and generation (default: %(default)s)")
    er.add_argument("--out", default=None, help="folder for metrics_ref.json, predictions.jsonl, run.json")
    er.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_option(er)
    er.set_defaults(func=_evaluate_ref)

    cm = sub.add_parser("compare", help="one table over several evaluation runs",
                        description="Print one table over runs written by `esc-env evaluate` (a run folder, or an --out folder "
                                    "holding several).")
    cm.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (with metrics.json) or evaluate --out folders")
    cm.add_argument("--plots", default=None, metavar="DIR", help="write the comparison plots to DIR")
    cm.add_argument("--json", default=None, metavar="FILE", help="write the metrics of all runs to FILE")
    cm.set_defaults(func=_compare)

    tr = sub.add_parser("train", help="train a learner from a YAML config: aflow | rlff | ppo",
                        description="Dispatch to the trainer of an algorithm with the settings of a YAML file "
                                    "(examples/configs/ has one per algorithm).  Unknown keys are an error.")
    tr.add_argument("algorithm", choices=sorted(TRAINERS), help="the learner")
    tr.add_argument("--config", required=True, help="YAML file of training settings")
    tr.add_argument("--dry-run", action="store_true", help="only check the config file")
    tr.set_defaults(func=_train)
    parser.set_defaults(_subparsers={"rollout": ro, "evaluate": ev, "evaluate-ref": er})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    # transformers' per-tensor "Loading weights" bars are noise here and would break one-line
    # errors raised after a model load; HF_HUB_DISABLE_PROGRESS_BARS=0 brings them back
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] not in ("0", "") and "transformers" in sys.modules:
        # transformers reads the variable once, at import: when it is already imported (main called
        # from Python, as the tests do), switch its bars off directly
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        if getattr(args, "config", None) and args.command in args._subparsers:
            args = _apply_config(parser, args._subparsers[args.command], args.config, argv)
        args.argv = argv
        if args.command in ("rollout", "evaluate", "evaluate-ref") and not args.policy:
            raise UserError("no policy: pass --policy SPEC (or give 'policy' in --config)")
        return int(args.func(args) or 0)
    except SystemExit as e:  # the re-parse with --config values rejected an option (already printed)
        return int(e.code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user and backend errors: one line; bugs keep their traceback
        if _is_backend_error(e):
            print(f"esc-env {args.command}: backend error: {_one_line(e)}", file=sys.stderr)
            return 1
        if not _is_user_error(e):
            raise
        print(f"esc-env {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    return " ".join(str(msg).split())


#: set on an exception that escaped a trainer's own code (see :func:`_train`)
_IN_TRAINER = "_esc_env_raised_in_trainer"


def _is_backend_error(e: BaseException) -> bool:
    from agents.backends import BackendError

    return isinstance(e, BackendError)


def _is_user_error(e: BaseException) -> bool:
    from esc_env.evaluation.reference import WordNetUnavailable

    if getattr(e, _IN_TRAINER, False):  # raised while a trainer ran: only missing files are the user's
        return isinstance(e, (UserError, FileNotFoundError, NotADirectoryError))
    return isinstance(e, (UserError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError,
                          KeyError, WordNetUnavailable))


if __name__ == "__main__":
    sys.exit(main())
