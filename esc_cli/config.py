"""Config files: YAML option values for a command (``--config``) or a trainer (``esc-env train``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from .common import UserError


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


def apply_config(parser: argparse.ArgumentParser, sub: argparse.ArgumentParser, path: str, argv: list[str]) -> argparse.Namespace:
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


def config_to_argv(config: dict, parser: "argparse.ArgumentParser | None" = None) -> list[str]:
    """``{"total_timesteps": 1000, "env_kwargs": {...}}`` -> ``["--total-timesteps", "1000", "--env-kwargs", "{...}"]``.

    ``true`` gives the bare flag; ``false`` gives nothing, or ``--no-KEY`` for a
    ``BooleanOptionalAction`` of ``parser``; ``null`` gives nothing.
    """
    negatable = set()
    if parser is not None:
        negatable = {a.dest for a in parser._actions if isinstance(a, argparse.BooleanOptionalAction)}
    argv: list[str] = []
    for k, v in config.items():
        flag = "--" + str(k).replace("_", "-")
        if isinstance(v, bool):
            if v:
                argv.append(flag)
            elif str(k).replace("-", "_") in negatable:
                argv.append("--no-" + str(k).replace("_", "-"))
            continue
        if v is None:
            continue
        argv += [flag, json.dumps(v) if isinstance(v, (dict, list)) else str(v)]
    return argv
