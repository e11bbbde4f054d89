"""Glue between esc-env and the RL trainers researchers already run.

Each module imports its trainer lazily and only when used; install the matching extra:

- :mod:`esc_env.integrations.trl_rollout`: a ``rollout_func`` for ``trl.GRPOTrainer`` that plays
  whole ``ESCText-v0`` episodes (``pip install esc-env[trl]``), with
  :mod:`esc_env.integrations.chat_tokens`: the chat-template prefix check and the token assembly
  (policy ids verbatim, template and seeker ids with mask 0).
- :mod:`esc_env.integrations.verifiers_env`: esc-env episodes as a ``verifiers`` environment
  (``pip install esc-env[verifiers]``).
- :mod:`esc_env.integrations.verl_interaction`: a verl ``BaseInteraction`` for verl's multi-turn
  rollout (``pip install esc-env[verl]``).
"""
