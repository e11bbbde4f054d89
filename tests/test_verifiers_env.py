"""esc-env as a verifiers 0.4.0 environment (esc_env.integrations.verifiers_env).

Runs verifiers' own eval loop (``verifiers.v1.cli.eval.runner.run_eval``, what ``vf-eval`` runs)
in-process: the supporter is verifiers' agent, served by a real llama.cpp server on the
embedded SmolLM2 (the ``llama_server`` fixture); the seeker and the judge are esc-env's, on the
embedded transformers model.  The reward verifiers writes to ``traces.jsonl`` is checked
against an independent esc-env replay of the same supporter turns.

Skipped when ``verifiers`` (with its ``v1`` API) is not importable, unless
``ESC_ENV_REQUIRE_VERIFIERS=1`` (then the module fails).  Run it in ``.venv-verifiers``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re

import pytest

from tests.llama_server import MODEL_ALIAS, llama_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.verifiers


def _verifiers_missing() -> str | None:
    try:
        if importlib.util.find_spec("verifiers") is None:
            return "verifiers is not installed"
        if importlib.util.find_spec("verifiers.v1") is None:
            return "verifiers is installed but has no verifiers.v1 (0.4.0 API)"
    except ImportError as e:
        return f"verifiers does not import: {e}"
    return None


_MISSING = _verifiers_missing()
if _MISSING is not None:
    if os.environ.get("ESC_ENV_REQUIRE_VERIFIERS") == "1":
        pytest.fail(f"{_MISSING} and ESC_ENV_REQUIRE_VERIFIERS=1 (pip install 'esc-env[verifiers]')", pytrace=False)
    pytest.skip(f"{_MISSING}: pip install 'esc-env[verifiers]' (bash .ci/setup-venv verifiers)", allow_module_level=True)

from esc_env.integrations.verifiers_env import (  # noqa: E402
    PLUGIN_ID,
    EngineBatcher,
    ESCTaskset,
    ESCTasksetConfig,
    eval_config,
)

MAX_TURNS = 2


@pytest.fixture(scope="module")
def engine():
    """An esc-env text engine on the embedded model (the env's engine shares its backend)."""
    from esc_env.build import build_engine

    return build_engine("embedded", action_mode="text", max_turns=MAX_TURNS)


@pytest.fixture(scope="module")
def vf_run(llama_server, tmp_path_factory):  # noqa: F811
    """Two esc-env episodes through verifiers' eval loop; returns (episodes, traces.jsonl rows)."""
    from verifiers.v1.cli.eval.runner import run_eval

    out = tmp_path_factory.mktemp("vf-eval")
    config = eval_config(llama_server.base_url, MODEL_ALIAS, num_tasks=2, max_turns=MAX_TURNS,
                         max_tokens=32, output_dir=out)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    env_logger = logging.getLogger("esc_env.integrations.verifiers_env")
    env_logger.addHandler(handler)
    old_level = env_logger.level
    env_logger.setLevel(logging.INFO)
    try:
        episodes = asyncio.run(run_eval(config))
    finally:
        env_logger.removeHandler(handler)
        env_logger.setLevel(old_level)
    (traces_file,) = out.glob("*/traces.jsonl")
    rows = [json.loads(line) for line in traces_file.read_text().splitlines() if line.strip()]
    engine_log = [r.getMessage() for r in records if r.getMessage().startswith("esc-env engine:")]
    return episodes, rows, engine_log


def _messages(trace_row: dict) -> list[dict]:
    return [{"role": n["message"]["role"], "content": n["message"].get("content") or "", "sampled": n["sampled"]}
            for n in trace_row["nodes"]]


@pytest.mark.server
def test_eval_loop_runs_two_episodes(vf_run):
    episodes, rows, _ = vf_run
    assert len(episodes) == 2 and len(rows) == 2
    assert {r["task"]["data"]["persona_id"] for r in rows} == {"builtin/job-loss-01", "builtin/job-mistake-02"}
    for row in rows:
        assert row["ok"], row["errors"]
        # one trace per episode: the supporter's; the seeker is esc-env's, not a verifiers agent
        (trace,) = row["traces"]
        assert trace["agent"]["name"] == "supporter" and trace["agent"]["trainable"] is True
        assert trace["ok"] and not trace["errors"]


@pytest.mark.server
def test_one_engine_serves_both_episodes(vf_run):
    """Both episodes went through the env's one engine: its log counts their starts and steps."""
    _, rows, engine_log = vf_run
    (line,) = engine_log
    m = re.fullmatch(r"esc-env engine: (\d+) start call\(s\) for (\d+) episode\(s\), (\d+) transition call\(s\) for (\d+) step\(s\)", line)
    assert m, line
    start_calls, episodes, step_calls, steps = map(int, m.groups())
    assert episodes == 2 and 1 <= start_calls <= 2
    assert steps == sum(len(r["traces"][0]["info"]["esc_env"]["rewards"]) for r in rows)
    assert 1 <= step_calls <= steps


@pytest.mark.server
def test_turns_alternate_and_seeker_turns_are_not_sampled(vf_run):
    _, rows, _ = vf_run
    for row in rows:
        (trace,) = row["traces"]
        msgs = _messages(trace)
        record = trace["info"]["esc_env"]
        assert msgs[0]["role"] == "system" and not msgs[0]["sampled"]
        body = msgs[1:]
        # seeker (user), supporter (assistant), seeker, supporter, ...: strictly alternating
        assert [m["role"] for m in body] == ["user", "assistant"] * (len(body) // 2)
        # only the supporter's turns are model-sampled (trainable); the seeker's never are
        assert all(m["sampled"] == (m["role"] == "assistant") for m in body)
        seeker_turns = [t["text"] for t in record["turns"] if t["speaker"] == "seeker"]
        supporter_turns = [t["text"] for t in record["turns"] if t["speaker"] == "supporter"]
        # the seeker's turns are the supporter's user messages (the final reply ends the episode)
        assert [m["content"] for m in body if m["role"] == "user"] == seeker_turns[:-1]
        assert [m["content"].strip() for m in body if m["role"] == "assistant"] == supporter_turns
        assert len(seeker_turns) == len(supporter_turns) + 1


@pytest.mark.server
def test_episode_ends_at_max_turns(vf_run):
    _, rows, _ = vf_run
    for row in rows:
        (trace,) = row["traces"]
        record, metrics = trace["info"]["esc_env"], trace["metrics"]
        n = len(record["rewards"])
        assert metrics["esc_turns"] == n
        if record["success"] or record["gave_up"]:  # the seeker may end it early
            assert record["ended_by"] == "terminated" and n <= MAX_TURNS
        else:
            assert n == MAX_TURNS and record["truncated"] and record["ended_by"] == "truncated"
            assert metrics["esc_truncated"] == 1.0


@pytest.mark.server
def test_recorded_reward_equals_esc_env_return(vf_run, engine):
    """verifiers' recorded reward == the return of a fresh esc-env replay of the same supporter turns."""
    from esc_env.build import resolve_personas
    from esc_env.state import EpisodeState, find_persona

    _, rows, _ = vf_run
    bank = resolve_personas("builtin")
    for row in rows:
        (trace,) = row["traces"]
        data = trace["task"]["data"]
        msgs = _messages(trace)
        seeker = [m["content"] for m in msgs if m["role"] == "user"]
        supporter = [m["content"].strip() for m in msgs if m["role"] == "assistant"]
        state = engine.start([find_persona(bank, data["persona_id"])], [data["seed"]])[0]
        assert state.turns[-1].text == seeker[0]
        rewards, terms = [], {}
        for i, utterance in enumerate(supporter):
            t = engine.transition([state], [utterance])[0]
            state = EpisodeState.from_dict(t.state)
            rewards.append(t.reward)
            for k, v in t.info["reward_terms"].items():
                terms[k] = terms.get(k, 0.0) + v
            if i + 1 < len(seeker):
                assert t.info["seeker_utterance"] == seeker[i + 1]
        assert rewards, "no supporter turn was played"
        recorded = trace["rewards"]
        assert set(recorded) == {"episode_return"}
        assert recorded["episode_return"]["weight"] == 1.0
        assert recorded["episode_return"]["score"] == pytest.approx(sum(rewards), abs=1e-9)
        for k, v in terms.items():
            assert trace["metrics"][f"return_{k}"] == pytest.approx(v, abs=1e-9)


def test_batcher_serves_concurrent_episodes_in_one_engine_call(engine):
    from agents.personas import PersonaBank

    bank = PersonaBank.from_source("builtin")
    personas = [bank.get("builtin/breakup-01"), bank.get("builtin/exams-01")]
    batcher = EngineBatcher(engine, wait_s=0.05)

    async def play():
        try:
            states = await asyncio.gather(*(batcher.start(p, s) for p, s in zip(personas, (5, 6))))
            steps = await asyncio.gather(batcher.step(states[0], "That sounds really hard."),
                                         batcher.step(states[1], "What worries you most?"))
            bad = await asyncio.gather(batcher.step(states[0], "   "), batcher.step(states[1], "I hear you."),
                                       return_exceptions=True)
            return states, steps, bad
        finally:
            await batcher.close()

    states, steps, bad = asyncio.run(play())
    assert batcher.batch_sizes == [("start", 2), ("step", 2), ("step", 1)]
    # the batched answers are the engine's own answers for the same batch, each to its episode
    direct = engine.transition(engine.start(personas, [5, 6]), ["That sounds really hard.", "What worries you most?"])
    assert [t.info["seeker_utterance"] for t in steps] == [t.info["seeker_utterance"] for t in direct]
    assert [t.reward for t in steps] == [t.reward for t in direct]
    assert [s.persona.id for s in states] == [p.id for p in personas]
    # an empty utterance fails its own episode only, naming the rule
    assert isinstance(bad[0], ValueError) and "empty" in str(bad[0])
    assert bad[1].info["supporter_utterance"] == "I hear you."


def test_unknown_persona_id_names_the_field():
    with pytest.raises(ValueError, match=r"taskset\.persona_ids.*builtin/no-such"):
        ESCTaskset(ESCTasksetConfig(id=PLUGIN_ID, persona_ids=["builtin/no-such"]))
    with pytest.raises(ValueError, match=r"taskset\.personas"):
        ESCTaskset(ESCTasksetConfig(id=PLUGIN_ID, personas="nowhere:at-all"))


def test_taskset_seeds_and_order():
    ts = ESCTaskset(ESCTasksetConfig(id=PLUGIN_ID, persona_ids=["builtin/sleep-01", "builtin/exams-01"],
                                     episodes_per_persona=2, seed=10))
    tasks = list(ts)
    assert [(t.data.persona_id, t.data.seed) for t in tasks] == [
        ("builtin/sleep-01", 10), ("builtin/exams-01", 11), ("builtin/sleep-01", 12), ("builtin/exams-01", 13)]
    assert all(t.data.prompt is None and t.data.system_prompt for t in tasks)  # the seeker opens
    assert len({t.key for t in tasks}) == 4


def test_bad_options_name_the_field():
    from pydantic import ValidationError
    from verifiers.v1.utils.loaders import load_environment

    with pytest.raises(ValidationError, match="max_turnz"):
        eval_config("http://127.0.0.1:9/v1", "m", env={"max_turnz": 3})
    with pytest.raises(ValidationError, match="max_turns"):
        eval_config("http://127.0.0.1:9/v1", "m", max_turns=0)
    config = eval_config("http://127.0.0.1:9/v1", "m", env={"judges": ["affect", "bogus"]})
    with pytest.raises(ValueError, match=r"env\.\*.*bogus"):
        load_environment(config.env)


@pytest.mark.slow
@pytest.mark.server
def test_vf_eval_cli_runs_the_env(llama_server, tmp_path):  # noqa: F811
    """``python -m esc_env.integrations.verifiers_env`` is verifiers' own ``vf-eval`` CLI with the env registered."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "esc_env.integrations.verifiers_env", PLUGIN_ID, "--model", MODEL_ALIAS,
           "--client.base-url", llama_server.base_url, "-n", "1", "--env.max-turns", "1",
           "--env.taskset.persona-ids", '["builtin/sleep-01"]', "--sampling.max-tokens", "24",
           "--no-push", "--no-rich", "-o", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (traces_file,) = tmp_path.glob("*/traces.jsonl")
    (row,) = [json.loads(line) for line in traces_file.read_text().splitlines() if line.strip()]
    (trace,) = row["traces"]
    record = trace["info"]["esc_env"]
    assert row["ok"] and record["persona_id"] == "builtin/sleep-01" and len(record["rewards"]) == 1
    assert trace["rewards"]["episode_return"]["score"] == pytest.approx(record["rewards"][0], abs=1e-12)
