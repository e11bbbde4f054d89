"""``esc-env train ALGORITHM --config FILE.yaml``: dispatch to a trainer with the settings of a YAML file.

A trainer is an importable module (:data:`TRAINERS`) offering either

* ``build_parser() -> argparse.ArgumentParser`` and ``main(argv)``: the config keys are the
  parser's long options (``-`` or ``_``); the config goes to ``main`` as ``--config FILE`` when
  the parser takes one, else as ``--key value`` flags; or
* ``train_from_config(config: dict)``, with ``CONFIG_KEYS`` or a ``TrainConfig`` dataclass
  naming the keys.

Keys and values are checked before training starts.  What the trainer raises afterwards is
not reinterpreted: a :class:`~agents.errors.UserInputError` or a backend error prints one line,
anything else keeps its traceback (see :func:`esc_cli.app.main`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import re
from typing import Any, Callable

from ..common import UserError
from ..config import check_config_keys, config_to_argv, load_config

NAME = "train"

#: the trainer module of each algorithm
TRAINERS: dict[str, str] = {
    "aflow": "policies.aflow.train",
    "rlff": "policies.rlff.train",
    "ppo": "policies.sb3.train",
    "calibrated-judge": "agents.judges.train_calibrated",
}


def add_parser(sub) -> argparse.ArgumentParser:
    tr = sub.add_parser(NAME, help="train a learner from a YAML config: " + " | ".join(sorted(TRAINERS)),
                        description="Dispatch to the trainer of an algorithm with the settings of a YAML file "
                                    "(examples/configs/ has one per algorithm).  Unknown keys are an error.")
    tr.add_argument("algorithm", choices=sorted(TRAINERS), help="the learner")
    tr.add_argument("--config", required=True, help="YAML file of training settings")
    tr.add_argument("--dry-run", action="store_true", help="only check the config file")
    tr.set_defaults(func=run)
    return tr


def trainer_module(kind: str):
    """The trainer module of ``kind``; a missing module is a :class:`UserError`."""
    target = TRAINERS[kind]
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and target.startswith(e.name):
            raise UserError(f"{kind} training is not available: the module {target} is not installed") from None
        raise


def config_keys(module: Any) -> set[str] | None:
    """The keys of a ``train_from_config`` trainer (``CONFIG_KEYS`` or the ``TrainConfig`` fields)."""
    keys = getattr(module, "CONFIG_KEYS", None)
    if keys is not None:
        return set(keys)
    cls = getattr(module, "TrainConfig", None)
    if cls is not None and dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return None


def parser_keys(parser: argparse.ArgumentParser) -> set[str]:
    """The config keys of an argparse trainer: the ``dest`` of every long option but ``--help``."""
    return {a.dest for a in parser._actions
            if a.dest != "help" and any(s.startswith("--") for s in a.option_strings)}


def check_argv(parse: Callable, argv: list[str], where: str) -> None:
    """Run a trainer's ``parse_args(argv)`` quietly; its complaint becomes one :class:`UserError` line."""
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


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    module = trainer_module(args.algorithm)
    fn: Callable | None = getattr(module, "train_from_config", None)
    build = getattr(module, "build_parser", None)
    argv: list[str] = []
    if fn is not None:
        known = config_keys(module)
        if known is None:
            raise UserError(f"the {args.algorithm} trainer has train_from_config but neither CONFIG_KEYS nor a TrainConfig dataclass")
        check_config_keys(config, known, str(args.config))
    elif callable(build) and callable(getattr(module, "main", None)):
        parser = build()
        options = parser_keys(parser)
        # exact keys ('-' or '_'): argparse itself would accept an abbreviation such as total_timestep
        check_config_keys(config, options - {"config"}, str(args.config), dashes=True)
        argv = ["--config", str(args.config)] if "config" in options else config_to_argv(config, parser)
        check_argv(getattr(module, "parse_args", parser.parse_args), argv, str(args.config))
    else:
        raise UserError(f"the {args.algorithm} trainer has neither train_from_config(config) nor build_parser() and main(argv)")
    if args.dry_run:
        print(f"esc-env train {args.algorithm}: {args.config} is valid ({len(config)} keys)")
        return 0
    try:
        if fn is not None:
            fn(config)
        else:
            module.main(argv)
    except SystemExit as e:  # an argparse-based main() rejecting an option (already printed)
        if e.code not in (0, None):
            raise UserError(f"the {args.algorithm} trainer rejected {args.config} (see the message above)") from None
    return 0
