#!/usr/bin/env bash
# GRPO with verl 0.7.1 on esc-env episodes: the policy is the supporter; esc-env's seeker answers
# and its judges score every turn (examples/verl/esc_interaction.yaml).
#
# NOT RUN in esc-env's own checks: verl's trainer needs GPUs, ray and vLLM or SGLang. What runs
# here on CPU is tests/test_verl_interaction.py (the interaction through verl's registry and its
# tool agent loop, and the parquet rows through verl's RLHFDataset) and the Hydra composition
# of this command (VERL_PRINT_CONFIG=1 prints the config instead of training).
#
#   pip install "esc-env[verl]"            # verl==0.7.1, the last release with verl.interactions
#   python examples/verl/prepare_data.py --out-dir data/esc_verl
#   MODEL=Qwen/Qwen2.5-0.5B-Instruct bash examples/verl/run_grpo.sh
#
# For a useful seeker, point the YAML's backend at a served model (backend: "openai:URL#model");
# "embedded" plays SmolLM2-135M on each agent-loop worker's CPU.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${DATA:-data/esc_verl}"
MODEL="${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}"
# = max_turns in the interaction YAML. verl ends a trajectory without asking the interaction once
# max_assistant_turns policy turns are written, so that limit is one more than the env's turns.
MAX_TURNS="${MAX_TURNS:-4}"
NGPUS="${NGPUS:-1}"
EXTRA=()
if [[ "${VERL_PRINT_CONFIG:-0}" == 1 ]]; then EXTRA=(--cfg job); fi

python -m verl.trainer.main_ppo "${EXTRA[@]}" \
    algorithm.adv_estimator=grpo \
    data.train_files="$DATA/train.parquet" \
    data.val_files="$DATA/val.parquet" \
    data.return_raw_chat=True \
    data.train_batch_size=16 \
    data.max_prompt_length=512 \
    data.max_response_length=1536 \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=16 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
    actor_rollout_ref.actor.use_kl_loss=True \
    actor_rollout_ref.actor.kl_loss_coef=0.001 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.mode=async \
    actor_rollout_ref.rollout.n=4 \
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.rollout.agent.default_agent_loop=tool_agent \
    actor_rollout_ref.rollout.multi_turn.enable=True \
    actor_rollout_ref.rollout.multi_turn.interaction_config_path="$HERE/esc_interaction.yaml" \
    actor_rollout_ref.rollout.multi_turn.max_user_turns="$MAX_TURNS" \
    actor_rollout_ref.rollout.multi_turn.max_assistant_turns="$((MAX_TURNS + 1))" \
    reward.custom_reward_function.path="$HERE/esc_reward.py" \
    reward.custom_reward_function.name=compute_score \
    trainer.critic_warmup=0 \
    trainer.logger='["console"]' \
    trainer.project_name=esc_env \
    trainer.experiment_name=esc_grpo \
    trainer.n_gpus_per_node="$NGPUS" \
    trainer.nnodes=1 \
    trainer.val_before_train=False \
    trainer.test_freq=-1 \
    trainer.save_freq=-1 \
    trainer.total_epochs=1 \
    "$@"
