"""Run folders: what an evaluation writes, and reading it back.

One policy's run is a folder::

    RUN/metrics.json     the metrics (summarize_episodes), NaN written as null
    RUN/episodes.jsonl   one episode record per line (esc_env.recording), transcripts included
    RUN/run.json         how it was made: argv, config, package versions, seeds, persona ids

``esc-env evaluate --out DIR`` writes one such folder per policy, ``DIR/<policy>``, plus
TensorBoard logs ``DIR/tb/<policy>`` and, with ``--plots``, ``DIR/plots/*.png``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from esc_env.fileio import jsonable, write_json_atomic

__all__ = [
    "jsonable",
    "write_json",
    "package_versions",
    "run_info",
    "load_run",
    "find_runs",
    "write_tensorboard",
    "RUN_FILES",
]

RUN_FILES = ("metrics.json", "episodes.jsonl", "run.json")

_PACKAGES = ("esc-env", "gymnasium", "numpy", "scipy", "torch", "transformers", "stable-baselines3", "sacrebleu",
             "rouge-score", "nltk", "matplotlib", "tensorboard", "openai", "vllm")


def write_json(path: "str | os.PathLike", data: Any) -> Path:
    """Write ``jsonable(data)`` as indented JSON (strict: NaN written as ``null``), atomically.

    :func:`jsonable` is :func:`esc_env.fileio.jsonable` (its contract is documented there).
    """
    return write_json_atomic(path, data, indent=2)


def package_versions(names: Sequence[str] = _PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape results (``None``: not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def _git_commit() -> str | None:
    """The commit of the source tree, read from ``.git`` without running git (``None`` if unknown)."""
    root = Path(__file__).resolve().parents[2] / ".git"
    try:
        head = (root / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = root / head[5:]
            return ref.read_text().strip() if ref.is_file() else None
        return head or None
    except OSError:
        return None


def run_info(command: str, argv: Sequence[str] | None, config: dict, **extra: Any) -> dict:
    """The ``run.json`` record: command, argv, config, versions, platform, time, and ``extra``."""
    return {
        "command": command,
        "argv": list(sys.argv[1:] if argv is None else argv),
        "config": config,
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def find_runs(paths: Sequence["str | os.PathLike"]) -> list[Path]:
    """Run folders among ``paths``: a folder with ``metrics.json``, or a folder whose
    sub-folders are runs (an ``evaluate --out`` folder with several policies).

    Raises:
        FileNotFoundError: a path does not exist or holds no run.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"run folder not found: {p}")
        if (p / "metrics.json").is_file():
            out.append(p)
            continue
        subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / "metrics.json").is_file()) if p.is_dir() else []
        if not subs:
            raise FileNotFoundError(f"no run in {p} (expected {p / 'metrics.json'} or sub-folders holding one)")
        out.extend(subs)
    return out


def load_run(path: "str | os.PathLike") -> dict:
    """``{"path", "name", "metrics", "run"}`` of a run folder (``run`` may be ``{}``).

    Raises:
        FileNotFoundError: no ``metrics.json``.
        ValueError: ``metrics.json`` is not valid JSON.
    """
    path = Path(path)
    mfile = path / "metrics.json"
    if not mfile.is_file():
        raise FileNotFoundError(f"no metrics.json in {path}")
    try:
        metrics = json.loads(mfile.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{mfile}: not valid JSON ({e})") from None
    run: dict = {}
    rfile = path / "run.json"
    if rfile.is_file():
        try:
            run = json.loads(rfile.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            run = {}
    name = run.get("policy") or metrics.get("policy") or run.get("name") or path.name
    return {"path": str(path), "name": name, "metrics": _nan_back(metrics), "run": run}


def _nan_back(m: Any) -> Any:
    """``None`` bounds of intervals back to NaN (the inverse of :func:`jsonable` for intervals)."""
    if isinstance(m, dict):
        if {"value", "low", "high", "n"} <= set(m):
            return {k: (float("nan") if v is None and k in ("value", "low", "high") else v) for k, v in m.items()}
        return {k: _nan_back(v) for k, v in m.items()}
    if isinstance(m, list):
        return [_nan_back(v) for v in m]
    return m


def write_tensorboard(logdir: "str | os.PathLike", metrics: dict, episodes: Sequence[dict] = ()) -> Path:
    """TensorBoard scalars of one run in ``logdir``.

    * ``eval/<metric>`` (and ``eval/<metric>_ci_low``/``_ci_high``) at step 0 for success
      rate, AT, intensity change, return, give-up rate and rubric criteria;
    * ``episode/return``, ``episode/length``, ``episode/intensity_change`` with the episode
      index as the step;
    * ``by_turn/success_rate`` (SR@t) and ``by_turn/intensity_mean`` with the turn as the step.
    """
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(logdir))
    try:
        scalars = {k: metrics[k] for k in ("success_rate", "avg_turns", "intensity_change", "return", "give_up_rate")}
        scalars.update({f"rubric_{k}": v for k, v in metrics.get("rubric", {}).items()})
        for name, iv in scalars.items():
            for suffix, key in (("", "value"), ("_ci_low", "low"), ("_ci_high", "high")):
                v = iv.get(key)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    writer.add_scalar(f"eval/{name}{suffix}", float(v), 0)
        for i, ep in enumerate(episodes):
            writer.add_scalar("episode/return", float(ep["return"]), i)
            writer.add_scalar("episode/length", float(ep["length"]), i)
            writer.add_scalar("episode/intensity_change", float(ep["intensities"][-1]) - float(ep["intensities"][0]), i)
        for t, v in enumerate(metrics.get("success_rate_by_turn", []), start=1):
            writer.add_scalar("by_turn/success_rate", float(v), t)
        for t, v in enumerate(metrics.get("intensity_by_turn", {}).get("mean", [])):
            writer.add_scalar("by_turn/intensity_mean", float(v), t)
        writer.flush()
    finally:
        writer.close()
    return logdir
