"""TRL's GRPOTrainer on whole ESCText-v0 episodes: token assembly, masks, rewards, the example.

The hand-checked token ids are SmolLM2-135M-Instruct's (the embedded model's ChatML template):
``"I hear you."`` is ``[57, 4875, 346, 30]``, ``<|im_end|>`` is 2, ``"\\n"`` is 198.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from agents.errors import UserInputError
from esc_env.integrations.chat_tokens import (
    ChatTemplateError,
    ChatTokens,
    EpisodeTokens,
    check_prefix_preserving,
    check_token_alignment,
    segment_alignment,
)

EOS, NL = 2, 198


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from agents.backends.embedded import embedded_model_dir

    return AutoTokenizer.from_pretrained(embedded_model_dir())


@pytest.fixture(scope="module")
def chat(tokenizer):
    return ChatTokens(tokenizer)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ---- token assembly on a hand-built dialogue -------------------------------------------------
def hand_built(tokenizer, chat):
    """Two policy turns around one seeker reply, assembled as the rollout does."""
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "I feel sad."}]
    ep = EpisodeTokens(chat.opening(msgs))
    turn1 = ids(tokenizer, "I hear you.") + [EOS]
    ep.add_sampled(turn1, [-0.5] * len(turn1))
    msgs.append({"role": "assistant", "content": "I hear you."})
    reply = {"role": "user", "content": "Thanks."}
    ep.add_env(chat.env_segment(msgs, reply))
    msgs.append(reply)
    turn2 = ids(tokenizer, "Tell me more.") + [EOS]
    ep.add_sampled(turn2, [-1.0] * len(turn2))
    msgs.append({"role": "assistant", "content": "Tell me more."})
    return msgs, ep


def test_chatml_pieces_of_smollm2(tokenizer, chat):
    assert chat.end_id == EOS and chat.close_ids == [NL]
    opening = chat.opening([{"role": "system", "content": "S"}, {"role": "user", "content": "I feel sad."}])
    assert tokenizer.decode(opening) == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nI feel sad.<|im_end|>\n<|im_start|>assistant\n"


def test_mask_layout_of_a_two_turn_dialogue(tokenizer, chat):
    msgs, ep = hand_built(tokenizer, chat)
    # "\n" "<|im_start|>" "user" "\n" "Thanks" "." "<|im_end|>" "\n" "<|im_start|>" "ass" "istant" "\n"
    env = [NL, 1, 4093, NL, 16937, 30, EOS, NL, 1, 520, 9531, NL]
    assert tokenizer.decode(env) == "\n<|im_start|>user\nThanks.<|im_end|>\n<|im_start|>assistant\n"
    assert ep.completion_ids == [57, 4875, 346, 30, EOS] + env + [31530, 549, 540, 30, EOS]
    assert ep.env_mask == [1] * 5 + [0] * 12 + [1] * 5
    assert ep.logprobs == [-0.5] * 5 + [0.0] * 12 + [-1.0] * 5
    assert check_token_alignment(tokenizer, msgs, ep.prompt_ids, ep.completion_ids) is None
    seg = segment_alignment(tokenizer, msgs, ep.prompt_ids, ep.completion_ids, ep.env_mask)
    assert seg.mismatch is None and seg.resampled_turns == ()


def test_a_seeker_token_with_mask_1_is_caught_where_it_is(tokenizer, chat):
    msgs, ep = hand_built(tokenizer, chat)
    for k in (5, 9):  # the "\n" after the policy's turn, and "Thanks"
        mask = list(ep.env_mask)
        mask[k] = 1
        seg = segment_alignment(tokenizer, msgs, ep.prompt_ids, ep.completion_ids, mask)
        assert seg.mismatch is not None and seg.mismatch.position == len(ep.prompt_ids) + k
    mask = list(ep.env_mask)
    mask[2] = 0  # a sampled token with mask 0
    assert segment_alignment(tokenizer, msgs, ep.prompt_ids, ep.completion_ids, mask).mismatch is not None


def test_a_respelt_turn_is_kept_and_reported(tokenizer, chat):
    """Sampled ids that spell " superficial" as " super" "f" "icial" stay as sampled: the strict
    check points at them, the segment check names the turn."""
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "I feel sad."}]
    ep = EpisodeTokens(chat.opening(msgs))
    sampled = [5195, 4598, 2076, 86, 4800, 30, EOS]  # "That sounds" " super" "f" "icial" "."
    ep.add_sampled(sampled, [0.0] * 7)
    msgs.append({"role": "assistant", "content": tokenizer.decode(sampled[:-1])})
    assert msgs[-1]["content"] == "That sounds superficial." and ids(tokenizer, msgs[-1]["content"]) == [5195, 4598, 22154, 30]
    strict = check_token_alignment(tokenizer, msgs, ep.prompt_ids, ep.completion_ids)
    assert strict.position == len(ep.prompt_ids) + 2 and strict.ours == " super" and strict.fresh == " superficial"
    seg = segment_alignment(tokenizer, msgs, ep.prompt_ids, ep.completion_ids, ep.env_mask)
    assert seg.mismatch is None and seg.resampled_turns == (0,)
    msgs[-1]["content"] = "That sounds superb."  # a different text is a mismatch, not a respelling
    assert segment_alignment(tokenizer, msgs, ep.prompt_ids, ep.completion_ids, ep.env_mask).mismatch is not None


# ---- the prefix check ------------------------------------------------------------------------
def bad_template(tokenizer, template: str):
    bad = copy.deepcopy(tokenizer)
    bad.chat_template = template
    return bad


COUNTING = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + ' (' + messages|length|string + ')\n' + m['content'] "
            "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
FORGETFUL = ("{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}{{ '<|im_start|>' + m['role'] + '\n' "
             "+ m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_prefix_check_names_the_model_and_the_first_difference(tokenizer):
    check_prefix_preserving(tokenizer)  # the real template passes
    with pytest.raises(ChatTemplateError) as e:
        ChatTokens(bad_template(tokenizer, COUNTING))
    msg = str(e.value)
    assert isinstance(e.value, UserInputError) and tokenizer.name_or_path in msg
    # rendering 3 messages writes "(3)" where the 2-message rendering wrote "(2)"
    assert "does not preserve prefixes" in msg and "'2'" in msg and "'3'" in msg and "rendering 3 messages" in msg
    with pytest.raises(ChatTemplateError, match="rendering 4 messages"):  # drops the earlier assistant turn
        check_prefix_preserving(bad_template(tokenizer, FORGETFUL))
    no_system = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    with pytest.raises(ChatTemplateError, match="System role not supported") as e:
        check_prefix_preserving(bad_template(tokenizer, no_system))
    assert tokenizer.name_or_path in str(e.value)


def test_rollout_checks_the_template_before_loading_any_model(tokenizer):
    from esc_env.integrations.trl_rollout import ESCRollout

    with pytest.raises(ChatTemplateError, match="preserve prefixes"):
        ESCRollout(bad_template(tokenizer, COUNTING), backend="no-such-backend:at-all")


def test_bad_options_name_the_field(tokenizer, backend):
    from esc_env.integrations.trl_rollout import ESCRollout, episode_dataset, parse_episode_prompt, reward_term

    for kwargs, field in [({"max_turn_tokens": 0}, "max_turn_tokens"), ({"max_turns": 0}, "max_turns"),
                          ({"invalid_reply_penalty": math.nan}, "invalid_reply_penalty"),
                          ({"system_prompt": " "}, "system_prompt"), ({"max_turn_tokens": True}, "max_turn_tokens")]:
        with pytest.raises(UserInputError, match=field):
            ESCRollout(tokenizer, backend=backend, **kwargs)
    with pytest.raises(UserInputError, match="action_mode='text'"):
        from esc_env.build import build_engine
        ESCRollout(tokenizer, engine=build_engine(backend, action_mode="strategy", max_turns=1))
    with pytest.raises(UserInputError, match="persona_id"):
        parse_episode_prompt("tell me a story")
    with pytest.raises(UserInputError, match="n must"):
        episode_dataset(0)
    with pytest.raises(UserInputError, match="name"):
        reward_term("")


def test_reward_functions_read_their_columns():
    from esc_env.integrations.trl_rollout import episode_return_reward, reward_term

    cols = {"episode_return": [0.25, -1.0], "return_improvement": [0.5, 0.0], "return_success": [1.0, 0.0]}
    assert episode_return_reward(["a", "b"], **cols) == [0.25, -1.0]
    improvement = reward_term("improvement")
    assert improvement.__name__ == "return_improvement" and improvement(["a", "b"], **cols) == [0.5, 0.0]
    with pytest.raises(UserInputError, match=r"'return_outcome'.*\['improvement', 'success'\]"):
        reward_term("outcome")(["a", "b"], **cols)


def test_episode_dataset_rows(tokenizer):
    from esc_env.integrations.trl_rollout import episode_dataset, parse_episode_prompt

    ds = episode_dataset(3, seed=5)
    assert ds.column_names == ["prompt", "persona_id", "episode_seed"] and len(ds) == 3
    assert [parse_episode_prompt(r["prompt"]) for r in ds] == list(zip(ds["persona_id"], ds["episode_seed"]))
    assert episode_dataset(3, seed=5)["prompt"] == ds["prompt"] and episode_dataset(3, seed=6)["prompt"][0] == ds["prompt"][1]


# ---- whole episodes with the real seeker and judge -------------------------------------------
class Scripted:
    """The policy's turns, fixed per row: call 1 gives row ``i`` ``scripts[i][0]``; later calls
    find the row by the text of its first turn in the prefix."""

    def __init__(self, tokenizer, scripts: list[list[list[int]]]):
        self.scripts, self.calls = scripts, 0
        self.firsts = [tokenizer.decode(s[0], skip_special_tokens=True) for s in scripts]
        self.decode = tokenizer.decode

    def __call__(self, prefixes):
        self.calls += 1
        if self.calls == 1:
            rows = list(range(len(prefixes)))
        else:
            rows = [next(i for i, s in enumerate(self.scripts) if len(s) >= self.calls
                         and "assistant\n" + self.firsts[i] in self.decode(p)) for p in prefixes]
        return [(self.scripts[r][self.calls - 1], [-0.25] * len(self.scripts[r][self.calls - 1])) for r in rows]


TURN1, TURN2 = "That sounds really hard.", "What worries you most?"
SEED = 3


@pytest.fixture(scope="module")
def played(tokenizer, backend):
    """Five episodes of one start: A and A' the same script, B an empty reply, C a turn cut at
    its token limit, D a respelt word."""
    from esc_env.integrations.trl_rollout import ESCRollout, episode_dataset

    rollout = ESCRollout(tokenizer, backend=backend, max_turns=2, max_turn_tokens=16, invalid_reply_penalty=-2.0)
    normal = [ids(tokenizer, TURN1) + [EOS], ids(tokenizer, TURN2) + [EOS]]
    scripts = [
        normal,
        normal,
        [[EOS]],
        [ids(tokenizer, "I see, and"), normal[1]],  # no end-of-turn token: cut
        [[5195, 4598, 2076, 86, 4800, 30, EOS], normal[1]],  # "That sounds" " super" "f" "icial" "."
    ]
    prompt = episode_dataset(1, seed=SEED)[0]["prompt"]
    out = rollout.rollout([prompt] * 5, Scripted(tokenizer, scripts))
    return rollout, scripts, out


def test_returns_and_terms_equal_the_env_played_with_the_same_words(played, backend):
    """Row A against ESCText-v0 reset with the dataset row's seed and stepped with the same texts."""
    import gymnasium as gym

    rollout, _, out = played
    a = rollout.last_records[0]
    env = gym.make("esc_env/ESCText-v0", backend=backend, max_turns=2)
    obs, info = env.reset(seed=SEED)
    assert a.messages[1]["content"] == info["seeker_utterance"]  # the dataset row is reset(seed=SEED)
    rewards, terms, done = [], {}, False
    for text in (TURN1, TURN2):
        if done:
            break
        _, r, term, trunc, info = env.step(text)
        rewards.append(r)
        for k, v in info["reward_terms"].items():
            terms[k] = terms.get(k, 0.0) + v
        done = term or trunc
    assert a.persona_id == env.unwrapped.state.persona.id
    assert a.rewards == pytest.approx(rewards, abs=1e-9)
    assert out["episode_return"][0] == pytest.approx(sum(rewards), abs=1e-9)
    for k, v in terms.items():
        assert out[f"return_{k}"][0] == pytest.approx(v, abs=1e-9)
    assert out["return_invalid_reply"][0] == 0.0
    assert out["episode_turns"][0] == len(rewards)


def test_a_group_shares_its_start_and_seeker_seeds(played):
    rollout, _, out = played
    a, a2 = rollout.last_records[:2]
    assert a.messages == a2.messages and a.rewards == a2.rewards
    assert out["completion_ids"][0] == out["completion_ids"][1]
    assert len({tuple(p) for p in out["prompt_ids"]}) == 1  # every row opens the same


def test_sampled_ids_are_kept_verbatim_and_masks_line_up(played, tokenizer):
    rollout, scripts, out = played
    for i, rec in enumerate(rollout.last_records):
        mask, comp = out["env_mask"][i], out["completion_ids"][i]
        sampled = [t for t, m in zip(comp, mask) if m]
        n_turns = sum(m["role"] == "assistant" for m in rec.messages)
        assert sampled == [t for turn in scripts[i][:n_turns] for t in turn]
        assert [lp for lp, m in zip(out["logprobs"][i], mask) if m] == [-0.25] * len(sampled)
        assert all(lp == 0.0 for lp, m in zip(out["logprobs"][i], mask) if not m)
        assert rec.segments(tokenizer, rollout.chat.close_ids).mismatch is None
    assert rollout.last_records[4].segments(tokenizer).resampled_turns == (0,)
    assert rollout.last_records[0].alignment(tokenizer) is None


def test_an_empty_reply_ends_the_episode_with_the_penalty(played):
    rollout, _, out = played
    b = rollout.last_records[2]
    assert b.ended == "invalid_reply" and b.rewards == [] and out["episode_turns"][2] == 1
    assert out["completion_ids"][2] == [EOS] and out["env_mask"][2] == [1]
    assert out["episode_return"][2] == -2.0 and out["return_invalid_reply"][2] == -2.0
    assert out["return_improvement"][2] == 0.0


def test_a_cut_turn_gets_its_end_token_with_mask_0(played, tokenizer):
    rollout, scripts, out = played
    c = rollout.last_records[3]
    assert c.cut_turns == [0]
    n = len(scripts[3][0])
    assert out["completion_ids"][3][: n + 2] == scripts[3][0] + [EOS, NL]
    assert out["env_mask"][3][: n + 2] == [1] * n + [0, 0]
    assert c.messages[2]["content"] == "I see, and"


def test_sample_turns_logprobs_are_the_models(tokenizer, chat):
    """The log-probs returned with each sampled token are log_softmax(logits / T) of the model at
    that position (TRL's vLLM importance-sampling correction compares against them)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from agents.backends.embedded import embedded_model_dir
    from esc_env.integrations.trl_rollout import sample_turns

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir(), dtype=torch.float32)
    prefixes = [chat.opening([{"role": "user", "content": "I feel sad."}]),
                chat.opening([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "My cat died."}])]
    config = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=0.7, eos_token_id=[EOS], pad_token_id=EOS)
    torch.manual_seed(0)
    rows = sample_turns(model, prefixes, config, EOS, {EOS})
    for prefix, (sampled, logprobs) in zip(prefixes, rows):
        assert 1 <= len(sampled) <= 6 and len(logprobs) == len(sampled)
        with torch.no_grad():
            logits = model(torch.tensor([prefix + sampled])).logits[0, len(prefix) - 1:-1] / 0.7
        want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(sampled)[:, None])[:, 0]
        np.testing.assert_allclose(logprobs, want.numpy(), atol=2e-3)


# ---- the example: 2 GRPO steps --------------------------------------------------------------
def test_example_runs_two_grpo_steps_and_checks_every_batch(backend, tmp_path):
    import importlib.util
    from pathlib import Path

    pytest.importorskip("trl")
    path = Path(__file__).resolve().parents[1] / "examples" / "train_trl_grpo.py"
    spec = importlib.util.spec_from_file_location("train_trl_grpo", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    main = example.main

    result = main(["--steps", "2", "--prompts", "1", "--num-generations", "2", "--max-turns", "2",
                   "--max-turn-tokens", "12", "--reward-terms", "improvement", "--output-dir", str(tmp_path)],
                  backend=backend)
    steps = [e for e in result["log_history"] if "loss" in e]
    assert [e["step"] for e in steps] == [1, 2]
    assert all(math.isfinite(e["loss"]) for e in steps)
    for e in steps:  # both reward columns reached TRL
        assert {"rewards/episode_return_reward/mean", "rewards/return_improvement/mean"} <= set(e)
    assert len(result["records"]) == 4 and {s for s, _, _ in result["records"]} == {0, 1}
    assert (tmp_path / "log_history.jsonl").read_text().count("\n") == len(result["log_history"])


def test_vllm_server_adapter_shapes(played):
    """vLLM server mode is not run here (no GPU).  This checks only the adapter around TRL's
    documented ``VLLMGeneration.generate(prompts, images, num_generations)`` return value
    ``(prompt_ids, completion_ids, logprobs[len][k], logprob_token_ids)``, with a stand-in that
    returns such a tuple: the turn limit is set for the call and restored, the sampled token's
    log-prob is the first of each position's list, and a missing one becomes NaN."""
    from types import SimpleNamespace

    rollout, _, _ = played
    seen = {}

    class StandIn:
        max_completion_length = 999

        def generate(self, prompts, images, num_generations):
            seen["limit"], seen["args"] = self.max_completion_length, (images, num_generations)
            return prompts, [[5, 6, EOS], [7]], [[[-0.1], [-0.2], [None]], [[-0.3]]], None

    stand_in = StandIn()
    trainer = SimpleNamespace(vllm_generation=stand_in, accelerator=SimpleNamespace(num_processes=1))
    rows = rollout.vllm_generator(trainer)([[1, 2], [3]])
    assert seen == {"limit": rollout.max_turn_tokens, "args": (None, 1)} and stand_in.max_completion_length == 999
    assert rows[0][0] == [5, 6, EOS] and rows[0][1][:2] == [-0.1, -0.2] and math.isnan(rows[0][1][2])
    assert rows[1] == ([7], [-0.3])
    with pytest.raises(UserInputError, match="one training process"):
        rollout.vllm_generator(SimpleNamespace(vllm_generation=stand_in, accelerator=SimpleNamespace(num_processes=2)))
