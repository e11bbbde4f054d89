"""esc-env as a verl 0.7.1 interaction: verl's registry, its async API, its tool agent loop,
its dataset class and its reward hook, with the embedded model.

Run in the verl venv (``.venv-verl``); skipped where verl is not importable, unless
``ESC_ENV_REQUIRE_VERL=1``, which makes a missing verl a failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.verl

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "verl"
REQUIRE = os.environ.get("ESC_ENV_REQUIRE_VERL") == "1"


def _need(module: str, hint: str = "install esc-env[verl] (verl==0.7.1)"):
    """The module, or a skip (a failure under ESC_ENV_REQUIRE_VERL=1) that says why it does not import."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken dependency (pyarrow built for another numpy)
        if REQUIRE:
            pytest.fail(f"ESC_ENV_REQUIRE_VERL=1 but {module} does not import: {e!r}; {hint}")
        pytest.skip(f"{module} does not import here ({e!r}); {hint}", allow_module_level=True)


#: verl 0.7.1 pins numpy<2, and pyarrow>=20 (which datasets>=4 wants) needs numpy>=2
PYARROW_HINT = "verl 0.7.1 needs numpy<2: pin pyarrow<20 and datasets<4 in its venv"


_need("verl.interactions.base")
from verl.interactions.base import BaseInteraction  # noqa: E402
from verl.interactions.utils.interaction_registry import initialize_interactions_from_config  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from esc_env.core import EpisodeOverError  # noqa: E402
from esc_env.integrations import verl_interaction as vi  # noqa: E402
from esc_env.state import UnknownPersonaError  # noqa: E402

P1, P2 = "builtin/job-loss-01", "builtin/breakup-01"
SUPPORT = ["That sounds really hard. What worries you most right now?",
           "You are carrying a lot. Who could you talk to this week?"]


def _run(coro):
    return asyncio.run(coro)


def _config(path: Path = EXAMPLES / "esc_interaction.yaml") -> dict:
    """The first interaction's config in a YAML, with its name."""
    doc = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return {**doc["interaction"][0]["config"], "name": doc["interaction"][0]["name"]}


@pytest.fixture(scope="module")
def yaml_path(tmp_path_factory) -> Path:
    """The shipped YAML with a tiny episode: 2 turns, short greedy seeker replies."""
    doc = OmegaConf.load(EXAMPLES / "esc_interaction.yaml")
    cfg = doc.interaction[0].config
    cfg.max_turns = 2
    cfg.seeker_params = {"max_new_tokens": 12, "temperature": 0.0}
    cfg.batch_wait_s = 0.2  # concurrent test requests always meet in one batch
    path = tmp_path_factory.mktemp("verl") / "esc_interaction.yaml"
    OmegaConf.save(doc, path)
    return path


@pytest.fixture(scope="module")
def interaction(yaml_path):
    return initialize_interactions_from_config(str(yaml_path))["esc"]


def _count_calls(monkeypatch, obj, name: str) -> list:
    """Record every call of the real ``obj.name`` (it still runs)."""
    calls, real = [], getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(len(args[0]) if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


# ---- verl's registry and base class --------------------------------------------------------
def test_registry_builds_a_verl_interaction_from_the_shipped_yaml():
    interactions = initialize_interactions_from_config(str(EXAMPLES / "esc_interaction.yaml"))
    assert list(interactions) == ["esc"]
    it = interactions["esc"]
    assert isinstance(it, BaseInteraction)
    assert type(it).__name__ == "ESCInteraction" and type(it).__module__ == "esc_env.integrations.verl_interaction"
    assert it.name == "esc"
    assert it.engine.action_mode == "text"
    assert it.engine.max_turns == _config()["max_turns"]
    assert {"builtin/job-loss-01", "builtin/breakup-01"} <= {p.id for p in it.personas}


def test_interactions_with_one_config_share_one_engine(yaml_path, interaction):
    again = initialize_interactions_from_config(str(yaml_path))["esc"]  # verl makes one per trajectory
    assert again is not interaction and again.engine is interaction.engine
    assert again.instance_ids == [] or set(again.instance_ids).isdisjoint(interaction.instance_ids)


# ---- one episode through the async API -----------------------------------------------------
def test_episode_rewards_are_the_envs_and_the_score_is_their_sum(interaction):
    async def play():
        iid = await interaction.start_interaction("ep-1", name="esc", persona_id=P1, seed=3)
        assert iid == "ep-1"
        st = interaction.episode_state(iid)
        assert st.persona.id == P1 and st.seed == 3 and len(st.turns) == 1
        messages = [{"role": "system", "content": "be kind"}, {"role": "user", "content": st.turns[0].text}]
        before, steps = [], []
        for text in SUPPORT:
            before.append(interaction.episode_state(iid))
            messages.append({"role": "assistant", "content": text})
            out = await interaction.generate_response(iid, messages, name="esc", persona_id=P1, seed=3)
            steps.append(out)
            messages.append({"role": "user", "content": out[1]})
        return iid, before, steps, await interaction.calculate_score(iid)

    iid, before, steps, score = _run(play())
    (done1, reply1, r1, x1), (done2, reply2, r2, x2) = steps
    assert done1 is False and not x1["terminated"] and not x1["truncated"]  # greedy: no early end on turn 1
    assert done2 is True and x2["truncated"] and x2["turn"] == 2  # max_turns = 2
    final = interaction.episode_state(iid)
    assert [t.text for t in final.turns if t.speaker == "supporter"] == SUPPORT
    assert [t.text for t in final.turns if t.speaker == "seeker"][1:] == [reply1, reply2]
    assert final.rewards == [r1, r2]
    # each reward is the env's formula on the judged intensities: (I_{t-1} - I_t) / 4 + relief - giving up
    for t, (r, x) in enumerate([(r1, x1), (r2, x2)]):
        i0, i1 = final.intensities[t], final.intensities[t + 1]
        assert x["intensity"] == {"before": i0, "after": i1}
        assert x["reward_terms"]["improvement"] == pytest.approx((i0 - i1) / 4)
        assert r == pytest.approx(sum(x["reward_terms"].values()))
        assert r == pytest.approx((i0 - i1) / 4 + x["success"] - x["gave_up"])
    assert x2["episode_return"] == pytest.approx(r1 + r2)
    assert score == pytest.approx(r1 + r2)
    # the same (state, utterance) through the engine alone gives the same turn
    for st, text, r, reply in zip(before, SUPPORT, [r1, r2], [reply1, reply2]):
        t = interaction.engine.transition([st], [text])[0]
        assert t.reward == pytest.approx(r, abs=1e-9) and t.info["seeker_utterance"] == reply
    with pytest.raises(EpisodeOverError, match="ep-1"):
        _run(interaction.generate_response(iid, [{"role": "user", "content": final.turns[0].text},
                                                 {"role": "assistant", "content": "more"}]))
    _run(interaction.finalize_interaction(iid))
    assert iid not in interaction.instance_ids
    with pytest.raises(vi.UnknownInstanceError, match="ep-1"):
        _run(interaction.calculate_score(iid))


def test_concurrent_instances_keep_their_own_state_and_share_one_seeker_call(interaction, monkeypatch):
    replies = _count_calls(monkeypatch, interaction.engine.seeker, "reply")
    opens = _count_calls(monkeypatch, interaction.engine, "states_from_dialogues")
    texts = {"a": ["I hear how scared you are about money.", "What would help most tonight?"],
             "b": ["Six years is a long time; of course it hurts.", "Is there a friend you could stay with?"]}
    personas = {"a": P1, "b": P2}
    n_before = {k: len(v) for k, v in interaction.batch_sizes.items()}

    async def play():
        from esc_env.state import find_persona

        openings = {k: find_persona(interaction.personas, p).opening for k, p in personas.items()}
        await asyncio.gather(*[interaction.start_interaction(k, name="esc", persona_id=p, seed=1, opening=openings[k])
                               for k, p in personas.items()])
        chats = {k: [{"role": "user", "content": openings[k]}] for k in personas}
        outs = {k: [] for k in personas}
        for turn in range(2):
            for k in personas:
                chats[k].append({"role": "assistant", "content": texts[k][turn]})
            results = await asyncio.gather(*[interaction.generate_response(k, chats[k]) for k in personas])
            for k, out in zip(personas, results):
                outs[k].append(out)
                chats[k].append({"role": "user", "content": out[1]})
        return outs

    outs = _run(play())
    for k, pid in personas.items():
        st = interaction.episode_state(k)
        assert st.persona.id == pid
        assert [t.text for t in st.turns if t.speaker == "supporter"] == texts[k]
        assert [t.text for t in st.turns if t.speaker == "seeker"][1:] == [o[1] for o in outs[k]]
        assert st.rewards == [o[2] for o in outs[k]]
        assert outs[k][-1][0] is True
    assert replies == [2, 2]  # one seeker call per turn for both conversations
    assert opens == [2]  # both openings judged in one call
    sizes = interaction.batch_sizes
    assert sizes["start"][n_before["start"]:] == [2] and sizes["step"][n_before["step"]:] == [2, 2]
    for k in personas:
        _run(interaction.finalize_interaction(k))


# ---- bad input ------------------------------------------------------------------------------
def test_bad_start_arguments_name_the_field(interaction):
    with pytest.raises(UnknownPersonaError, match=r"interaction_kwargs\['persona_id'\].*builtin/nobody"):
        _run(interaction.start_interaction("x", persona_id="builtin/nobody", seed=0))
    with pytest.raises(ValueError, match=r"interaction_kwargs\['persona_id'\] is missing"):
        _run(interaction.start_interaction("x", seed=0))
    with pytest.raises(ValueError, match=r"interaction_kwargs\['seed'\] is missing"):
        _run(interaction.start_interaction("x", persona_id=P1))
    with pytest.raises(ValueError, match=r"interaction_kwargs\['seed'\] must be a non-negative int, got -1"):
        _run(interaction.start_interaction("x", persona_id=P1, seed=-1))
    with pytest.raises(ValueError, match=r"unknown interaction_kwargs \['persona'\]"):
        _run(interaction.start_interaction("x", persona=P1, persona_id=P1, seed=0))
    with pytest.raises(ValueError, match=r"interaction_kwargs\['name'\]='other'"):
        _run(interaction.start_interaction("x", name="other", persona_id=P1, seed=0))
    with pytest.raises(ValueError, match=r"interaction_kwargs\['opening'\]"):
        _run(interaction.start_interaction("x", persona_id=P1, seed=0, opening="  "))
    assert "x" not in interaction.instance_ids


def test_bad_turns_name_the_field_before_any_llm_call(interaction, monkeypatch):
    with pytest.raises(vi.UnknownInstanceError, match="'nope'.*start_interaction"):
        _run(interaction.generate_response("nope", [{"role": "assistant", "content": "hi"}]))
    opening = "I can't sleep since the exam results came out."
    _run(interaction.start_interaction("bad", persona_id=P1, seed=0, opening=opening))
    calls = _count_calls(monkeypatch, interaction.engine, "transition")
    user = {"role": "user", "content": opening}
    for messages, pattern in [
        ([user, {"role": "assistant", "content": "   "}], r"messages\[-1\]\['content'\] is empty"),
        ([user, {"role": "assistant", "content": None}], r"messages\[-1\]\['content'\] must be the supporter's text"),
        ([user], r"messages\[-1\]\['role'\] must be 'assistant'.*'user'"),
        ([], r"messages must be a non-empty list"),
        ([{"role": "user", "content": "something else"}, {"role": "assistant", "content": "hi"}],
         r"first user message 'something else' is not the episode's opening"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            _run(interaction.generate_response("bad", messages))
    assert calls == []
    with pytest.raises(ValueError, match="already running"):
        _run(interaction.start_interaction("bad", persona_id=P1, seed=0, opening=opening))
    _run(interaction.finalize_interaction("bad"))
    with pytest.raises(vi.UnknownInstanceError, match="'bad'"):
        _run(interaction.finalize_interaction("bad"))


def test_empty_and_overlong_turns_follow_the_config(yaml_path, interaction, monkeypatch):
    config = {**_config(yaml_path), "empty_turn": "end", "empty_turn_reward": -0.5}
    it = vi.ESCInteraction(config)
    assert it.engine is interaction.engine  # the same engine settings: the same shared engine
    opening = "My dog died yesterday and the house feels empty."
    user = {"role": "user", "content": opening}
    _run(it.start_interaction("e", persona_id=P1, seed=0, opening=opening))
    steps = _count_calls(monkeypatch, it.engine, "transition")
    done, reply, r, extra = _run(it.generate_response("e", [user, {"role": "assistant", "content": " \n "}]))
    assert (done, reply, r) == (True, "", -0.5) and extra["empty_turn"] and extra["terminated"]
    assert steps == [] and _run(it.calculate_score("e")) == -0.5
    with pytest.raises(EpisodeOverError):
        _run(it.generate_response("e", [user, {"role": "assistant", "content": "hello"}]))

    long = "I am here for you. " * 60  # 1140 characters
    strict = vi.ESCInteraction({**config, "overlong": "error"})
    _run(strict.start_interaction("s", persona_id=P1, seed=0, opening=opening))
    with pytest.raises(ValueError, match=r"messages\[-1\]\['content'\] has 1139 characters.*at most 1000"):
        _run(strict.generate_response("s", [user, {"role": "assistant", "content": long}]))
    assert steps == []
    _run(it.start_interaction("long", persona_id=P1, seed=0, opening=opening))
    done, reply, r, extra = _run(it.generate_response("long", [user, {"role": "assistant", "content": long}]))
    assert extra["supporter_truncated"] and not extra["empty_turn"]
    said = it.episode_state("long").turns[1].text
    assert len(said) <= 1000 and long.startswith(said) and extra["info"]["supporter_utterance"] == said


def test_bad_config_names_the_key():
    cls = vi.ESCInteraction
    with pytest.raises(ValueError, match=r"unknown interaction config key\(s\) \['max_turn'\]"):
        cls({"name": "esc", "max_turn": 2})
    with pytest.raises(ValueError, match=r"config\['overlong'\] must be 'truncate' or 'error'"):
        cls({"name": "esc", "overlong": "drop"})
    with pytest.raises(ValueError, match=r"config\['max_batch'\] must be a positive int, got 0"):
        cls({"name": "esc", "max_batch": 0})
    with pytest.raises(ValueError, match=r"config\['batch_wait_s'\]"):
        cls({"name": "esc", "batch_wait_s": -1})
    with pytest.raises(ValueError, match=r"config\['empty_turn'\] must be 'error' or 'end', got 'skip'"):
        cls({"name": "esc", "empty_turn": "skip"})
    with pytest.raises(ValueError, match=r"config\['empty_turn_reward'\] must be a finite number"):
        cls({"name": "esc", "empty_turn_reward": float("nan")})


# ---- the dataset rows through verl's RLHFDataset --------------------------------------------
def _rl_dataset(path: Path, tokenizer, cache: Path):
    mod = _need("verl.utils.dataset.rl_dataset", PYARROW_HINT)
    cfg = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 512, "filter_overlong_prompts": True,
                            "return_raw_chat": True, "cache_dir": str(cache), "filter_overlong_prompts_workers": 1})
    return mod.RLHFDataset(str(path), tokenizer, cfg)


def _prepare_module():
    spec = importlib.util.spec_from_file_location("esc_verl_prepare_data", EXAMPLES / "prepare_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prepared_parquet_reads_back_through_rlhf_dataset(yaml_path, interaction, tmp_path):
    _need("pyarrow", PYARROW_HINT)
    prep = _prepare_module()
    paths = prep.main(["--config", str(yaml_path), "--out-dir", str(tmp_path), "--seeds", "0", "5",
                       "--persona-ids", P1, P2, "builtin/job-mistake-02", "--val-personas", "1"])
    assert set(paths) == {"train", "val"}
    ds = _rl_dataset(paths["train"], interaction.engine.seeker.backend.tokenizer, tmp_path / "cache")
    assert len(ds) == 4  # 2 personas x 2 seeds
    seen = []
    for i in range(len(ds)):
        row = ds[i]
        kw = row["extra_info"]["interaction_kwargs"]
        assert row["interaction_kwargs"] == kw  # what the agent loop hands to start_interaction
        assert row["agent_name"] == "tool_agent" and row["data_source"] == "esc_env"
        assert row["reward_model"]["ground_truth"] == ""
        assert [m["role"] for m in row["raw_prompt"]] == ["system", "user"]
        assert row["raw_prompt"][0]["content"] == vi.DEFAULT_SYSTEM_PROMPT
        assert set(kw) == {"name", "persona_id", "seed", "opening"} and kw["name"] == "esc"
        assert row["raw_prompt"][1]["content"] == kw["opening"]
        seen.append((kw["persona_id"], kw["seed"]))
    assert sorted(seen) == sorted((p, s) for p in (P1, P2) for s in (0, 5))
    val = _rl_dataset(paths["val"], interaction.engine.seeker.backend.tokenizer, tmp_path / "cache")
    assert [val[i]["interaction_kwargs"]["persona_id"] for i in range(len(val))] == ["builtin/job-mistake-02"] * 2

    # the episode verl starts from a row opens with the row's prompt, with or without `opening`
    row = ds[0]
    kw = dict(row["interaction_kwargs"])
    _run(interaction.start_interaction("from-row", **kw))
    kw.pop("opening")
    _run(interaction.start_interaction("reopened", **kw))
    for iid in ("from-row", "reopened"):
        assert interaction.episode_state(iid).turns[0].text == row["raw_prompt"][1]["content"]
        _run(interaction.finalize_interaction(iid))


def test_llm_written_openings_match_between_rows_and_episodes(interaction):
    """A persona without a written opening: the seeker writes it, the same for the row and the episode."""
    from esc_env.state import find_persona

    persona = dataclasses.replace(find_persona(interaction.personas, P1), id="test/no-opening", opening=None)
    config = {"name": "esc", "personas": [persona], "max_turns": 2,
              "seeker_params": {"max_new_tokens": 12, "temperature": 0.0}}
    rows = vi.dataset_rows(config, seeds=[7])
    assert len(rows) == 1
    kw = rows[0]["extra_info"]["interaction_kwargs"]
    assert kw["persona_id"] == "test/no-opening" and kw["opening"] == rows[0]["prompt"][-1]["content"]
    it = vi.ESCInteraction(config)
    kw = {k: v for k, v in kw.items() if k != "opening"}  # the seeker opens again, with the row's seed
    _run(it.start_interaction("fresh", **kw))
    assert it.episode_state("fresh").turns[0].text == rows[0]["prompt"][-1]["content"]


# ---- the reward hook ------------------------------------------------------------------------
def test_reward_file_loads_through_verls_custom_reward_function():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    cfg = OmegaConf.create({"reward": {"custom_reward_function": {"path": str(EXAMPLES / "esc_reward.py"),
                                                                  "name": "compute_score"}}})
    fn = get_custom_reward_fn(cfg)
    assert fn(data_source="esc_env", solution_str="...", ground_truth="",
              extra_info={"turn_scores": [0.25, -0.125, 1.0]}) == pytest.approx(1.125)
    assert fn(data_source="esc_env", solution_str="", ground_truth="", extra_info={"turn_scores": []}) == 0.0
    with pytest.raises(ValueError, match=r"extra_info\['turn_scores'\] is missing"):
        fn(data_source="esc_env", solution_str="", ground_truth="", extra_info={})


# ---- verl's own tool agent loop -------------------------------------------------------------
class _LocalPolicyServer:
    """The policy for verl's agent loop: greedy generation with a local transformers model, in
    place of verl's vLLM/SGLang server (which needs a GPU); same ``generate`` signature."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 20):
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, video_data=None):
        import torch
        from verl.workers.rollout.replica import TokenOutput

        with torch.no_grad():
            out = self.model.generate(torch.tensor([prompt_ids], device=self.model.device), do_sample=False,
                                      max_new_tokens=self.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id)
        new = out[0, len(prompt_ids):].tolist()
        eos = self.tokenizer.eos_token_id
        if eos in new:
            new = new[: new.index(eos) + 1]
        return TokenOutput(token_ids=new, log_probs=[0.0] * len(new), stop_reason="completed")


@pytest.mark.slow
def test_verls_tool_agent_loop_plays_whole_episodes_in_shared_batches(yaml_path, interaction, tmp_path, monkeypatch):
    """Two trajectories through verl's own ToolAgentLoop, concurrently (one loop object each, as
    verl makes them): whole episodes, the seeker's tokens masked, one seeker call per turn for both."""
    _need("verl.experimental.agent_loop.tool_agent_loop", "verl 0.7.1 imports cachetools without declaring it: "
          "pip install cachetools")
    _need("pyarrow", PYARROW_HINT)
    import pandas as pd
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap
    from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop

    rl_dataset = _need("verl.utils.dataset.rl_dataset", PYARROW_HINT)
    backend = interaction.engine.seeker.backend
    pd.DataFrame(vi.dataset_rows(_config(yaml_path), [P2, P1], [0])).to_parquet(tmp_path / "rows.parquet")
    ds = _rl_dataset(tmp_path / "rows.parquet", backend.tokenizer, tmp_path / "cache")
    rows = [ds[0], ds[1]]
    cfg = OmegaConf.create({
        "actor_rollout_ref": {"model": {}, "rollout": {
            "prompt_length": 512, "response_length": 1024,
            "multi_turn": {"enable": True, "interaction_config_path": str(yaml_path), "max_user_turns": 2,
                           "max_assistant_turns": 3, "max_parallel_calls": 1, "max_tool_response_length": 256,
                           "tool_response_truncate_side": "middle", "tool_config_path": None, "format": "hermes"}}},
        "data": {}})
    replies = _count_calls(monkeypatch, interaction.engine.seeker, "reply")
    n_steps = len(interaction.batch_sizes["step"])

    async def rollout(row):  # the agent loop keeps the event loop it was made on
        loop = ToolAgentLoop(trainer_config=DictConfigWrap(cfg), server_manager=_LocalPolicyServer(backend.model, backend.tokenizer),
                             tokenizer=backend.tokenizer, processor=None, dataset_cls=rl_dataset.RLHFDataset,
                             data_config=DictConfigWrap(cfg.data))
        return loop.interaction_map["esc"], await loop.run({"temperature": 0.0}, **row)

    async def both():
        return await asyncio.gather(*[rollout(row) for row in rows])

    results = _run(both())
    assert replies == [2, 2] and interaction.batch_sizes["step"][n_steps:] == [2, 2]
    for row, (it, out) in zip(rows, results):
        assert isinstance(it, vi.ESCInteraction) and it.engine is interaction.engine
        (iid,) = it.instance_ids  # each trajectory has its own interaction object and episode
        st = it.episode_state(iid)
        assert st.persona.id == row["interaction_kwargs"]["persona_id"]
        assert st.turns[0].text == row["raw_prompt"][1]["content"]
        assert st.done and st.truncated and len(st.rewards) == 2
        assert out.extra_fields["turn_scores"] == st.rewards
        assert vi.compute_score("esc_env", "", "", extra_info=out.extra_fields) == pytest.approx(sum(st.rewards))
        ids, mask = out.response_ids, out.response_mask
        assert len(ids) == len(mask) and set(mask) == {0, 1}
        policy = backend.tokenizer.decode([t for t, m in zip(ids, mask) if m == 1], skip_special_tokens=True)
        seeker = backend.tokenizer.decode([t for t, m in zip(ids, mask) if m == 0], skip_special_tokens=True)
        supporter_turns = [t.text for t in st.turns if t.speaker == "supporter"]
        seeker_turns = [t.text for t in st.turns if t.speaker == "seeker"][1:]
        assert len(supporter_turns) == 2 and len(seeker_turns) == 2
        for text in supporter_turns:  # the policy's tokens are trained (mask 1) ...
            assert text in policy
        for text in seeker_turns:  # ... the seeker's replies are not (mask 0)
            assert text in seeker and text not in policy


# ---- the micro-batcher and the lazy import (no model) ---------------------------------------
def test_micro_batcher_gathers_splits_and_reports_errors_per_batch():
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from esc_env.integrations.batching import MicroBatcher

    calls = []

    def run_batch(items):
        calls.append(list(items))
        if "boom" in items:
            raise RuntimeError("engine failed")
        return [x * 10 for x in items]

    sizes: deque = deque()
    with ThreadPoolExecutor(1) as pool:
        mb = MicroBatcher(run_batch, pool, wait_s=0.2, max_batch=2, sizes=sizes)

        async def main():
            ok = await asyncio.gather(*[mb.submit(i) for i in range(5)])
            bad = await asyncio.gather(mb.submit("boom"), mb.submit(7), return_exceptions=True)
            after = await mb.submit(4)
            return ok, bad, after

        ok, bad, after = _run(main())
    assert ok == [0, 10, 20, 30, 40]
    assert calls[:3] == [[0, 1], [2, 3], [4]]  # max_batch=2: the first two went at once, the rest after
    assert [type(e) for e in bad] == [RuntimeError, RuntimeError]  # the whole batch sees the engine's error
    assert calls[3] == ["boom", 7] and after == 40 and calls[4] == [4]  # and the batcher goes on
    assert list(sizes) == [2, 2, 1, 2, 1]


def test_module_imports_without_verl_and_says_what_to_install():
    import subprocess
    import sys

    code = ("import sys; sys.modules['verl'] = None\n"
            "import esc_env.integrations.verl_interaction as m\n"
            "assert not m.verl_available()\n"
            "try:\n    m.ESCInteraction\nexcept ImportError as e:\n    print(e)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ESCInteraction needs verl's verl.interactions" in out.stdout and 'pip install "esc-env[verl]"' in out.stdout


@pytest.mark.slow
def test_run_script_composes_with_verls_trainer_config(tmp_path):
    """The GPU run script is not run here; its overrides are checked against verl's Hydra schema."""
    import subprocess
    import sys

    import yaml

    _need("pyarrow", PYARROW_HINT)  # verl's trainer imports it
    env = {**os.environ, "VERL_PRINT_CONFIG": "1", "DATA": str(tmp_path),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    out = subprocess.run(["bash", str(EXAMPLES / "run_grpo.sh")], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = yaml.safe_load(out.stdout)
    rollout = cfg["actor_rollout_ref"]["rollout"]
    mt = rollout["multi_turn"]
    assert mt["enable"] is True and Path(mt["interaction_config_path"]) == EXAMPLES / "esc_interaction.yaml"
    # verl stops before the interaction once max_assistant_turns is reached: one more than the env's turns
    assert mt["max_user_turns"] == _config()["max_turns"] and mt["max_assistant_turns"] == mt["max_user_turns"] + 1
    assert rollout["agent"]["default_agent_loop"] == "tool_agent"
    assert cfg["data"]["return_raw_chat"] is True
    assert cfg["reward"]["custom_reward_function"] == {"path": str(EXAMPLES / "esc_reward.py"), "name": "compute_score"}
