"""The ``esc-env`` command line and what builds learners from names: the top layer.

Layers, each importing only the ones before it::

    agents  <-  esc_env  <-  policies  <-  esc_cli

- :mod:`.app`: the parser and :func:`main` (the ``esc-env`` console script).
- :mod:`.commands`: one module per command (``demo``, ``rollout``, ``evaluate``,
  ``evaluate-ref``, ``compare``, ``train``).
- :mod:`.common`: what the commands share (:class:`UserError`, env and policy options).
- :mod:`.config`: ``--config`` YAML files.
- :mod:`.policy_specs`: policies from spec strings (``random``, ``fixed:NAME``, ``llm``,
  ``sb3:ZIP``, ``aflow:DIR``, ``rlff:DIR``).

``esc_env.cli`` and ``esc_env.evaluation.policies`` are deprecated aliases of these modules.
"""

from .app import build_parser, main
from .common import UserError
from .config import check_config_keys, load_config
from .commands.train import TRAINERS

__all__ = ["TRAINERS", "UserError", "build_parser", "check_config_keys", "load_config", "main"]
