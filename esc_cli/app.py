"""The ``esc-env`` command line: the parser and :func:`main` (the commands are in :mod:`esc_cli.commands`).

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
``train``               ``aflow | rlff | ppo | calibrated-judge --config FILE.yaml``: dispatch
                        to a trainer
======================  =====================================================================

Policies are named by spec strings: ``random``, ``fixed:<strategy>``, ``llm``,
``sb3:<model.zip>``, ``aflow:<checkpoint dir>``, ``rlff:<checkpoint dir>`` (see
:mod:`esc_cli.policy_specs`).

Errors about the user's input print one line and no traceback:

* :class:`~agents.errors.UserInputError` (bad options, spec strings, config keys, persona or
  dataset files; :class:`~esc_cli.common.UserError` is one) and the file-system errors of a
  path the user named (not found, not a directory, a directory, no permission): exit code 2;
* backend errors (:class:`agents.backends.BackendError`: a server that cannot be reached,
  an engine that cannot start, a model that cannot be loaded or a prompt it cannot take):
  the message names the URL or spec; exit code 1.

Anything else -- a ``ValueError`` or ``KeyError`` raised while a command or a trainer runs
included -- is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .commands import COMMANDS
from .common import LLM_ID, STAGE_ID, Parser, UserError
from .config import apply_config

__all__ = ["LLM_ID", "STAGE_ID", "UserError", "build_parser", "main"]

#: the exit code of a one-line user error and of a one-line backend error
USER_ERROR_EXIT, BACKEND_ERROR_EXIT = 2, 1

#: file-system errors of a path the user named: one line (the message names the path)
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    """The ``esc-env`` parser, one sub-parser per command of :mod:`esc_cli.commands`."""
    parser = Parser(prog="esc-env", description="Emotional-support conversation as an RL environment.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    subparsers = {module.NAME: module.add_parser(sub) for module in COMMANDS}
    # the commands whose options a --config file may give
    parser.set_defaults(_subparsers={k: subparsers[k] for k in ("rollout", "evaluate", "evaluate-ref")})
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
            args = apply_config(parser, args._subparsers[args.command], args.config, argv)
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
        if is_backend_error(e):
            print(f"esc-env {args.command}: backend error: {one_line(e)}", file=sys.stderr)
            return BACKEND_ERROR_EXIT
        if not is_user_error(e):
            raise
        print(f"esc-env {args.command}: error: {one_line(e)}", file=sys.stderr)
        return USER_ERROR_EXIT


def one_line(e: BaseException) -> str:
    """The exception's message on one line."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    return " ".join(str(msg).split())


def is_backend_error(e: BaseException) -> bool:
    """Whether ``e`` is a :class:`~agents.backends.BackendError` (printed in one line, exit code 1)."""
    from agents.backends import BackendError

    return isinstance(e, BackendError)


def is_user_error(e: BaseException) -> bool:
    """Whether ``e`` is about the user's input (printed in one line, exit code 2)."""
    from agents.errors import UserInputError
    from esc_env.evaluation.reference import WordNetUnavailable

    return isinstance(e, (UserInputError, WordNetUnavailable) + _PATH_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
