"""One episode state, one parse_action, one persona choice and one reset info for every esc-env env."""

from __future__ import annotations

import copy
import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest

import esc_env  # noqa: F401  (registers the ids)
from esc_env.core import INFO_KEYS, SearchableEnv, StageStepInfo, StepInfo
from esc_env.spaces import MAX_UTTERANCE_CHARS
from esc_env.stage import DEFAULT_PERSONAS
from esc_env.state import (
    EpisodeState,
    ParsedAction,
    UnknownPersonaError,
    choose_persona,
    episode_of,
    parse_action,
)

GREEDY = {"temperature": 0.0, "max_new_tokens": 16}
#: the stage env's personas, with openings (so that an LLM env's reset writes none)
PERSONAS = [dataclasses.replace(p, opening=f"Hi. {p.situation}") for p in DEFAULT_PERSONAS]
STAGE = "esc_env/ESCStage-v0"
ENV_IDS = ["esc_env/ESC-v0", "esc_env/ESCText-v0", STAGE]
#: a valid first action per (env id, action mode)
VALID = {"strategy": 0, "text": "That sounds really hard.", "strategy+text": {"strategy": 0, "utterance": "That sounds hard."}}


@pytest.fixture(scope="module")
def envs(backend):
    """One env per (id, action mode), built once for the module."""
    made = {}

    def make(env_id: str, mode: str | None = None, **kw):
        key = (env_id, mode, tuple(sorted(kw)))
        if key not in made:
            if mode is not None:
                kw["action_mode"] = mode
            if env_id != STAGE:
                kw.update(backend=backend, max_turns=2, seeker_params=GREEDY, supporter_params=GREEDY)
            made[key] = gym.make(env_id, disable_env_checker=True, **kw)
        return made[key]

    return make


def mode_of(env) -> str:
    return env.unwrapped.action_mode


# ---- the state type and the Protocol ---------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_env_satisfies_the_searchable_protocol(envs, env_id):
    env = envs(env_id)
    assert isinstance(env.unwrapped, SearchableEnv)
    assert not isinstance(object(), SearchableEnv)  # the check is not vacuous


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_get_state_set_state_round_trip_through_one_type(envs, env_id):
    env = envs(env_id)
    core = env.unwrapped
    env.reset(seed=3)
    start = core.get_state()
    env.step(VALID[mode_of(env)])
    assert isinstance(core.state, EpisodeState)
    snap = json.loads(json.dumps(core.get_state()))  # JSON data
    assert set(snap) == {"episode", "np_random"}
    episode = EpisodeState.from_dict(snap["episode"])
    assert episode.to_dict() == snap["episode"]  # the same type describes both env kinds
    assert episode.turn == 1 and len(episode.turns) == 3 and len(episode.intensities) == 2
    if env_id == STAGE:
        assert episode.hidden["stage"] in ("exploration", "comforting", "action")  # the model's variables
    # restore from the dict, from the episode alone and from the EpisodeState object: same state
    for form in (snap, snap["episode"], episode):
        core.set_state(start)
        assert core.get_state()["episode"] != snap["episode"]
        core.set_state(copy.deepcopy(form))
        assert core.get_state()["episode"] == snap["episode"]
    # a transition from the EpisodeState equals one from its dict, and changes neither
    a = VALID[mode_of(env)]
    t_obj, t_dict = core.transition([episode, snap], [a, a])  # one batched call
    assert t_obj.reward == t_dict.reward and t_obj.state == t_dict.state
    assert episode.to_dict() == snap["episode"]
    assert EpisodeState.from_dict(t_obj.state).turn == 2


def test_engine_state_names_still_import():
    from esc_env import engine, state

    assert engine.EpisodeState is state.EpisodeState and engine.ParsedAction is state.ParsedAction


def test_from_dict_names_a_missing_key():
    with pytest.raises(ValueError, match="missing the key 'turns'"):
        EpisodeState.from_dict({"persona": DEFAULT_PERSONAS[0].to_dict()})
    with pytest.raises(ValueError, match="must be a dict"):
        EpisodeState.from_dict([1, 2])


def test_episode_of_unwraps_once():
    ep = {"turns": [{"speaker": "seeker", "text": "hi"}]}
    assert episode_of({"episode": ep, "np_random": {}}) is ep
    assert episode_of(ep) is ep
    with pytest.raises(ValueError, match="got list"):
        episode_of([ep])
    with pytest.raises(ValueError, match=r"state\['episode'\] must be a dict"):
        episode_of({"episode": 3})


# ---- one parse_action -------------------------------------------------------------------------


BAD = {
    "strategy": [-1, 8, 2.5, "Question", True, None, np.array([1]), np.array(1.0)],
    "text": ["", "   ", "\n\t ", "x" * (MAX_UTTERANCE_CHARS + 1), 3, None],
    "strategy+text": [{"strategy": 0, "utterance": "   "}, {"strategy": 0, "utterance": ""}, {"strategy": 9, "utterance": "hi"},
                      {"strategy": True, "utterance": "hi"}, {"strategy": 0}, 0, "just text"],
}
CASES = [("esc_env/ESC-v0", None), (STAGE, None), ("esc_env/ESCText-v0", None),
         ("esc_env/ESC-v0", "strategy+text"), (STAGE, "strategy+text")]


@pytest.mark.parametrize("env_id,mode", CASES)
def test_every_env_refuses_bad_actions_with_the_one_parse_action(envs, env_id, mode):
    env = envs(env_id, mode)
    core = env.unwrapped
    env.reset(seed=0)
    before = core.get_state()
    for bad in BAD[mode_of(env)]:
        with pytest.raises(ValueError) as e:
            env.step(bad)
        with pytest.raises(ValueError) as ref:
            parse_action(bad, mode_of(env), core.strategies.names)
        assert str(e.value) == str(ref.value)  # the same rule, the same words
        assert core.get_state() == before  # nothing happened


@pytest.mark.parametrize("env_id,mode", [("esc_env/ESCText-v0", None), ("esc_env/ESC-v0", "strategy+text"), (STAGE, "strategy+text")])
def test_a_whitespace_only_utterance_is_refused_by_every_env(envs, env_id, mode):
    env = envs(env_id, mode)
    env.reset(seed=0)
    bad = "  \n " if mode_of(env) == "text" else {"strategy": 1, "utterance": "  \n "}
    with pytest.raises(ValueError, match="must not be empty or only whitespace"):
        env.step(bad)


def test_parse_action_rules_by_hand():
    names = ["A", "B", "C"]
    assert parse_action(2, "strategy", names) == ParsedAction(2, None)
    assert parse_action(np.int64(1), "strategy", names) == ParsedAction(1, None)
    assert parse_action(np.array(0), "strategy", names) == ParsedAction(0, None)
    assert parse_action("  hello \n", "text", names) == ParsedAction(None, "hello")  # stripped
    assert parse_action({"strategy": 1, "utterance": " hi"}, "strategy+text", names) == ParsedAction(1, "hi")
    assert parse_action("x" * MAX_UTTERANCE_CHARS, "text", names).utterance == "x" * MAX_UTTERANCE_CHARS
    with pytest.raises(ValueError, match=r"invalid action 3: .*\[0, 3\) \(0=A, 1=B, 2=C\)"):
        parse_action(3, "strategy", names)
    with pytest.raises(ValueError, match=r"invalid action\['strategy'\] -1"):
        parse_action({"strategy": -1, "utterance": "hi"}, "strategy+text", names)
    with pytest.raises(ValueError, match="limited to 1000"):
        parse_action("x" * 1001, "text", names)
    with pytest.raises(ValueError, match="action_mode must be one of"):
        parse_action(0, "words", names)


# ---- one persona choice, one reset ------------------------------------------------------------


def test_one_persona_choice_for_every_env(envs):
    llm = envs("esc_env/ESC-v0", None, personas=PERSONAS)
    stage = envs(STAGE, None, personas=PERSONAS)
    for seed in range(4):  # the same seed draws the same persona in both env kinds
        _, a = llm.reset(seed=seed)
        _, b = stage.reset(seed=seed)
        expected = choose_persona(PERSONAS, None, np.random.default_rng(seed))
        assert a["persona_id"] == b["persona_id"] == expected.id
        assert a["seeker_utterance"] == b["seeker_utterance"] == expected.opening
    p = PERSONAS[2]
    for env in (llm, stage):
        for options in ({"persona": p}, {"persona": p.to_dict()}, {"persona_id": p.id}):
            assert env.reset(seed=0, options=options)[1]["persona_id"] == p.id
        with pytest.raises(UnknownPersonaError, match="unknown persona_id 'nope'") as e:
            env.reset(options={"persona_id": "nope"})
        assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
        with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['persona_idx'\]"):
            env.reset(options={"persona_idx": 1})


def test_choose_persona_draws_once_from_the_rng():
    personas = list(DEFAULT_PERSONAS)
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    assert choose_persona(personas, {}, rng) is personas[int(twin.integers(len(personas)))]
    assert rng.integers(1000) == twin.integers(1000)  # exactly one draw was used
    assert choose_persona({p.id: p for p in personas}, {"persona_id": personas[1].id}, rng) is personas[1]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_info_has_the_keys_of_step_info(envs, env_id):
    env = envs(env_id)
    _, info = env.reset(seed=1)
    assert set(info) >= INFO_KEYS == set(StepInfo.__required_keys__)
    assert info["strategy"] is None and info["supporter_utterance"] is None and info["turn"] == 0
    assert info["reward_terms"] == {} and info["usage"] == {} and not info["success"] and not info["gave_up"]
    assert info["intensity"]["before"] == info["intensity"]["after"] == env.unwrapped.state.intensity
    _, _, _, _, step_info = env.step(VALID[mode_of(env)])
    assert set(step_info) >= INFO_KEYS
    extra = set(StageStepInfo.__optional_keys__)
    if env_id == STAGE:
        assert set(info) - INFO_KEYS == extra - {"role"} and set(step_info) - INFO_KEYS == extra
    else:
        assert set(info) == INFO_KEYS and not (set(step_info) & extra)


def test_vector_env_reset_options_and_info(backend):
    from esc_env.vector import ESCVectorEnv

    venv = ESCVectorEnv(2, backend, max_turns=1, seeker_params=GREEDY, supporter_params=GREEDY)
    pid = venv.personas[1].id
    _, infos = venv.reset(seed=0, options={"persona_id": pid})
    assert set(infos) >= INFO_KEYS and list(infos["persona_id"]) == [pid, pid]
    _, infos = venv.reset(seed=0, options={"persona": venv.personas[2]})
    assert list(infos["persona_id"]) == [venv.personas[2].id] * 2
    with pytest.raises(UnknownPersonaError):
        venv.reset(options={"persona_ids": ["nope", pid]})
    with pytest.raises(ValueError, match="unknown reset option"):
        venv.reset(options={"persona_idx": 0})
