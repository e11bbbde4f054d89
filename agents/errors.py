"""The exception for mistakes in what a user gave: options, spec strings, config and data files.

:class:`UserInputError` is raised where user input is checked (a policy or backend spec, a
config key, a persona or dataset file).  The command line prints it in one line, without a
traceback; any other exception raised while a command runs is treated as a bug and keeps its
traceback.  It subclasses ``ValueError``, so ``except ValueError`` keeps catching it.
"""

from __future__ import annotations

__all__ = ["UserInputError"]


class UserInputError(ValueError):
    """Bad user input (an option, spec string, config key or input file); the message names it."""
