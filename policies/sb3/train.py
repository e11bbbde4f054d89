"""PPO (Stable-Baselines3) over support strategies, CleanRL-style: the trainer of
``esc-env train ppo --config FILE.yaml`` and ``examples/train_ppo_sb3.py``.

Trains on ``esc_env/ESCStage-v0`` (the stage-model seeker, no LLM) by default, logs to
TensorBoard under ``runs/<run name>``, then evaluates the trained policy and the random
policy on the same seeded episodes and prints both with 95% confidence intervals::

    python examples/train_ppo_sb3.py                        # ~2-3 minutes on 2 CPU cores
    python -m policies.sb3.train                            # the same
    tensorboard --logdir runs

The LLM environment works through the same path, with tiny settings by default (each
step is several LLM calls)::

    python examples/train_ppo_sb3.py --env-id esc_env/ESC-v0 --env-kwargs '{"backend": "embedded"}'
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

import esc_env  # noqa: F401  (registers the environment ids)
from esc_env.evaluation.loop import play_episodes
from esc_env.wrappers import EncodedObservation, make_encoder

STAGE_ID = "esc_env/ESCStage-v0"

#: defaults that differ between the fast stage env and the (slow) LLM envs
DEFAULTS = {
    "stage": dict(total_timesteps=80_000, num_envs=8, n_steps=128, batch_size=256, n_epochs=4,
                  eval_episodes=200, max_turns=10, encoder="hashing:256"),
    "llm": dict(total_timesteps=64, num_envs=1, n_steps=16, batch_size=16, n_epochs=2,
                eval_episodes=4, max_turns=3, encoder="minilm"),
}


def build_parser() -> argparse.ArgumentParser:
    """The command line; every option has a help string."""
    p = argparse.ArgumentParser(prog="train_ppo_sb3", description="PPO (Stable-Baselines3) over support strategies.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # experiment
    p.add_argument("--exp-name", type=str, default="train_ppo_sb3", help="the name of this experiment")
    p.add_argument("--seed", type=int, default=1, help="seed of the experiment (PPO and the training envs)")
    p.add_argument("--log-dir", type=str, default="runs", help="TensorBoard logs go to LOG_DIR/<run name>")
    p.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads (small MLPs do not gain from more)")
    p.add_argument("--device", type=str, default="cpu", help="torch device of the policy")
    # environment
    p.add_argument("--env-id", type=str, default=STAGE_ID, help="the environment id (esc_env/ESCStage-v0 or esc_env/ESC-v0)")
    p.add_argument("--strategies", type=str, default="esconv", help="strategy set: esconv or aflow")
    p.add_argument("--max-turns", type=int, default=None, help="supporter turns per episode (default: 10 stage, 3 LLM)")
    p.add_argument("--env-kwargs", type=json.loads, default={}, help="extra keyword arguments of gymnasium.make, as JSON")
    p.add_argument("--encoder", type=str, default=None,
                   help="dialogue encoder: hashing[:DIM], minilm[:PATH] or backend[:SPEC] (default: hashing:256 stage, minilm LLM)")
    p.add_argument("--last-k-turns", type=int, default=4, help="dialogue turns embedded in the observation")
    p.add_argument("--save", type=str, default=None,
                   help="write the trained model to SAVE (.zip) and its encoder settings to SAVE.json, for `esc-env evaluate --policy sb3:SAVE`")
    # PPO
    p.add_argument("--total-timesteps", type=int, default=None, help="total environment steps of training (default: 80000 stage, 64 LLM)")
    p.add_argument("--num-envs", type=int, default=None, help="parallel environments (default: 8 stage, 1 LLM)")
    p.add_argument("--learning-rate", type=float, default=3e-4, help="the learning rate of the optimizer")
    p.add_argument("--n-steps", type=int, default=None, help="steps per environment per rollout (default: 128 stage, 16 LLM)")
    p.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: 256 stage, 16 LLM)")
    p.add_argument("--n-epochs", type=int, default=None, help="epochs over each rollout (default: 4 stage, 2 LLM)")
    p.add_argument("--gamma", type=float, default=0.99, help="the discount factor gamma")
    p.add_argument("--gae-lambda", type=float, default=0.95, help="the lambda of generalized advantage estimation")
    p.add_argument("--clip-range", type=float, default=0.2, help="the surrogate clipping coefficient")
    p.add_argument("--ent-coef", type=float, default=0.01, help="coefficient of the entropy bonus")
    p.add_argument("--vf-coef", type=float, default=0.5, help="coefficient of the value function loss")
    p.add_argument("--max-grad-norm", type=float, default=0.5, help="the maximum norm for gradient clipping")
    p.add_argument("--net-arch", type=str, default="128,128", help="hidden layer sizes of the policy and value MLPs")
    # evaluation
    p.add_argument("--eval-episodes", type=int, default=None, help="seeded evaluation episodes per policy (default: 200 stage, 4 LLM)")
    p.add_argument("--eval-seed", type=int, default=100_000, help="seed of the first evaluation episode (disjoint from training)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv``; options left unset get the defaults of the stage or the LLM env."""
    args = build_parser().parse_args(argv)
    kind = "stage" if args.env_id == STAGE_ID else "llm"
    for k, v in DEFAULTS[kind].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def make_env(args: argparse.Namespace, encoder) -> gym.Env:
    env = gym.make(args.env_id, strategies=args.strategies, max_turns=args.max_turns, **args.env_kwargs)
    return EncodedObservation(env, encoder, last_k_turns=args.last_k_turns)


@dataclass
class EvalResult:
    returns: np.ndarray
    successes: np.ndarray

    def summary(self) -> str:
        """Mean return (95% t-interval) and success rate (95% Wilson interval): the project's one CI formula."""
        from esc_env.evaluation.metrics import mean_ci, proportion_ci

        ret, sr = mean_ci(self.returns), proportion_ci(self.successes)
        return f"return {ret.format()}   success {sr.format(percent=True)}   (n={ret.n})"


def evaluate(env: gym.Env, act, episodes: int, seed: int) -> EvalResult:
    """Run ``act(obs) -> action`` on episodes seeded ``seed .. seed + episodes - 1``."""
    st = play_episodes(env, lambda obs, _: act(obs), episodes, seed, with_state=False)
    return EvalResult(st.returns, st.successes.astype(float))


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(args.torch_threads)
    run_name = f"{args.env_id.replace('/', '_')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    encoder = make_encoder(args.encoder)
    print(f"run {run_name}: {args.env_id}, strategies={args.strategies}, encoder={encoder}, "
          f"{args.total_timesteps} steps over {args.num_envs} envs")

    class SuccessRate(BaseCallback):
        """Logs the success and give-up rates of the episodes finished in each rollout."""

        def _on_rollout_start(self) -> None:
            self.ends: list[tuple[bool, bool]] = []

        def _on_step(self) -> bool:
            for info, done in zip(self.locals["infos"], self.locals["dones"]):
                if done:
                    self.ends.append((bool(info.get("success")), bool(info.get("gave_up"))))
            return True

        def _on_rollout_end(self) -> None:
            if self.ends:
                self.logger.record("rollout/success_rate", float(np.mean([s for s, _ in self.ends])))
                self.logger.record("rollout/give_up_rate", float(np.mean([g for _, g in self.ends])))

    vec = DummyVecEnv([lambda: Monitor(make_env(args, encoder)) for _ in range(args.num_envs)])
    vec.seed(args.seed)
    model = PPO(
        "MlpPolicy", vec,
        learning_rate=args.learning_rate, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
        gamma=args.gamma, gae_lambda=args.gae_lambda, clip_range=args.clip_range, ent_coef=args.ent_coef,
        vf_coef=args.vf_coef, max_grad_norm=args.max_grad_norm,
        policy_kwargs={"net_arch": [int(x) for x in args.net_arch.split(",") if x]},
        seed=args.seed, device=args.device, verbose=0,
    )
    model.set_logger(configure(os.path.join(args.log_dir, run_name), ["tensorboard"]))
    t0 = time.perf_counter()
    model.learn(total_timesteps=args.total_timesteps, callback=SuccessRate())
    train_s = time.perf_counter() - t0
    print(f"trained {args.total_timesteps} steps in {train_s:.1f} s ({args.total_timesteps / train_s:.0f} steps/s)")
    if args.save:
        zip_path = args.save if args.save.endswith(".zip") else args.save + ".zip"
        os.makedirs(os.path.dirname(os.path.abspath(zip_path)), exist_ok=True)
        model.save(zip_path)
        with open(zip_path[: -len(".zip")] + ".json", "w", encoding="utf-8") as f:
            json.dump({"encoder": args.encoder, "last_k_turns": args.last_k_turns, "env_id": args.env_id}, f)
        print(f"saved {zip_path}")

    eval_env = make_env(args, encoder)
    n_actions = int(eval_env.action_space.n)
    ppo = evaluate(eval_env, lambda o: int(model.predict(o, deterministic=True)[0]), args.eval_episodes, args.eval_seed)
    rng = np.random.default_rng(args.seed)
    rnd = evaluate(eval_env, lambda o: int(rng.integers(n_actions)), args.eval_episodes, args.eval_seed)
    print(f"evaluation on episodes seeded {args.eval_seed}..{args.eval_seed + args.eval_episodes - 1} (mean +- 95% CI):")
    print(f"  PPO     {ppo.summary()}")
    print(f"  random  {rnd.summary()}")
    results = {"ppo": ppo, "random": rnd}

    inner = eval_env.unwrapped
    if args.env_id == STAGE_ID and hasattr(inner, "get_state"):
        from esc_env.stage import OptimalPolicy

        opt = OptimalPolicy(inner)
        best = evaluate(eval_env, lambda o: opt.action(inner.state), args.eval_episodes, args.eval_seed)
        print(f"  optimum {best.summary()}   (DP over the hidden state: an upper bound)")
        results["optimum"] = best

    for name, res in results.items():
        model.logger.record(f"eval/{name}_return", float(res.returns.mean()))
        model.logger.record(f"eval/{name}_success_rate", float(res.successes.mean()))
    model.logger.dump(model.num_timesteps)
    model.logger.close()
    vec.close()
    eval_env.close()
    return results


if __name__ == "__main__":
    main()
