"""verl's ``reward.custom_reward_function`` for esc-env episodes: the episode's return.

    reward.custom_reward_function.path=examples/verl/esc_reward.py
    reward.custom_reward_function.name=compute_score

verl 0.7.1's reward loop hands the tool agent loop's ``turn_scores`` (the rewards that
``ESCInteraction.generate_response`` returned, one per supporter turn) in ``extra_info``;
``compute_score`` sums them (see :func:`esc_env.integrations.verl_interaction.compute_score`).
"""

from esc_env.integrations.verl_interaction import compute_score

__all__ = ["compute_score"]
