"""Evaluation of esc-env policies (see ``docs`` and ``esc-env evaluate --help``).

- :mod:`.metrics`: metric functions (CIs, AT, macro-F1, distinct-n, strategy statistics).
- :mod:`.interactive`: run a policy for seeded episodes through the environments.
- :mod:`.loop`: the plain episode loop (one env, nothing recorded) of the learners' evaluations.
- :mod:`.reference`: reference-based evaluation on ESConv (strategy accuracy/F1, BLEU,
  ROUGE-L, METEOR, Distinct-n, perplexity).
- :mod:`.runs`: run folders (metrics.json, episodes.jsonl, run.json) and TensorBoard logs.
- :mod:`.plots`: PNG plots.
- :mod:`.dialogue_quality`: readability measures of generated dialogue.

None of these imports ``policies``: a policy is anything with ``act_batch``.  Policies from
spec strings (``random``, ``fixed:NAME``, ``llm``, ``sb3:ZIP``...) are built by
:mod:`esc_cli.policy_specs`, above the learners (``esc_env.evaluation.policies`` is its
deprecated alias).
"""
