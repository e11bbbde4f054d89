"""One module per command: each has ``add_parser(sub)`` (its options) and ``run(args) -> exit code``.

========================  =====================================================================
module                    command
========================  =====================================================================
:mod:`.demo`              ``demo``: a few short episodes on the embedded model, transcripts printed
:mod:`.rollout`           ``rollout``: a policy for N episodes, transcripts written as JSONL
:mod:`.evaluate`          ``evaluate``: interactive evaluation of one or more policies
:mod:`.evaluate_ref`      ``evaluate-ref``: reference-based evaluation on ESConv
:mod:`.compare`           ``compare``: one table over saved runs
:mod:`.train`             ``train``: dispatch to a trainer with a YAML config
========================  =====================================================================
"""

from . import compare, demo, evaluate, evaluate_ref, rollout, train

#: the commands in the order ``esc-env --help`` lists them
COMMANDS = (demo, rollout, evaluate, evaluate_ref, compare, train)

__all__ = ["COMMANDS", "compare", "demo", "evaluate", "evaluate_ref", "rollout", "train"]
