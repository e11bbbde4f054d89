#!/usr/bin/env bash
# Regenerate the README's "Results" section: every number there comes from these commands.
#   bash benchmarks/results.sh            # stage env (no LLM) + a small LLM-env run; ~25 min on 2 CPU cores
#   bash benchmarks/results.sh stage      # only the stage-env part (~10 min)
# Outputs go to runs/results/; the two tables are printed by `esc-env compare` at the end
# and written to runs/results/{stage,llm}.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ESC=${ESC_ENV_CLI:-.venv/bin/esc-env}
OUT=runs/results
mkdir -p "$OUT"

# 1. learners on the stage-model seeker (esc_env/ESCStage-v0)
$ESC train ppo --config examples/configs/ppo_stage.yaml          # -> runs/results/ppo-stage.zip
$ESC train aflow --config examples/configs/aflow_stage.yaml      # -> runs/aflow/ESCStage-v0__stage__0/none/policy

# 2. interactive evaluation, 500 seeded episodes per policy, same seeds for all
$ESC evaluate --env-id esc_env/ESCStage-v0 --strategies esconv --episodes 500 --seed 10000 --num-envs 16 \
  --policy random --policy "fixed:Affirmation and Reassurance" --policy sb3:runs/results/ppo-stage.zip \
  --out "$OUT/stage-esconv" --overwrite --plots --no-progress
$ESC evaluate --env-id esc_env/ESCStage-v0 --strategies aflow --episodes 500 --seed 10000 --num-envs 16 \
  --policy random --policy aflow:runs/aflow/ESCStage-v0__stage__0/none/policy \
  --out "$OUT/stage-aflow" --overwrite --plots --no-progress
$ESC compare "$OUT/stage-esconv" "$OUT/stage-aflow" | tee "$OUT/stage.txt"

[ "${1:-all}" = "stage" ] && exit 0

# 3. the LLM environment on the embedded SmolLM2-135M (seeker, judge and supporter LLM):
#    small, to show the pipeline; use a bigger backend for numbers that mean something
$ESC evaluate --env-id esc_env/ESC-v0 --backend embedded --personas builtin --episodes 16 --max-turns 4 --num-envs 8 \
  --seed 0 --policy random --policy llm --policy "fixed:Question" --out "$OUT/llm" --overwrite --plots --no-progress
$ESC compare "$OUT/llm" | tee "$OUT/llm.txt"
