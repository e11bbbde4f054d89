"""The ``esc-env`` command line, run in-process through ``esc_cli.main``.

Most runs use the stage env (no LLM); two tiny runs use the embedded model (they need
``agents.supporter``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.synthetic_esconv import canonical_layout_sample

from esc_cli import build_parser, load_config, main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = canonical_layout_sample()
CONFIGS = REPO / "examples" / "configs"
STAGE = ["--env-id", "esc_env/ESCStage-v0", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", [[], ["demo"], ["rollout"], ["evaluate"], ["evaluate-ref"], ["compare"], ["train"]])
def test_help_everywhere(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: esc-env")


# ----------------------------------------------------------------------------- evaluate, compare
def test_evaluate_two_policies_writes_runs_tensorboard_and_plots(capsys, tmp_path):
    out_dir = tmp_path / "ev"
    code, out, err = run(capsys, "evaluate", *STAGE, "--policy", "random", "--policy", "fixed:Question", "--episodes", "16",
                         "--seed", "5", "--num-envs", "4", "--out", str(out_dir), "--plots")
    assert code == 0, err
    assert "success rate" in out and "avg turns (AT)" in out and "fixed:Question" in out
    for name in ("random", "fixed-question"):
        run_dir = out_dir / name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["n_episodes"] == 16 and metrics["env_id"] == "esc_env/ESCStage-v0"
        assert {"value", "low", "high", "n"} <= set(metrics["success_rate"])
        episodes = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
        episodes.sort(key=lambda e: e["episode_index"])  # written as they finish
        assert [e["episode_index"] for e in episodes] == list(range(16))
        assert len(episodes) == 16 and all(e["episode"]["turns"] for e in episodes)
        info = json.loads((run_dir / "run.json").read_text())
        assert info["seeds"] == list(range(5, 21))
        assert info["persona_ids"] == [e["persona_id"] for e in episodes]
        assert info["versions"]["gymnasium"] and info["argv"][0] == "evaluate"
        assert any((out_dir / "tb" / name).glob("events.out.tfevents.*"))
    # the same seeds give both policies the same personas
    ids = [json.loads((out_dir / n / "run.json").read_text())["persona_ids"] for n in ("random", "fixed-question")]
    assert ids[0] == ids[1]
    for png in ("intensity.png", "strategy_usage.png", "success_by_turn.png"):
        assert (out_dir / "plots" / png).stat().st_size > 10_000

    code, out, err = run(capsys, "compare", str(out_dir), "--json", str(tmp_path / "all.json"), "--plots", str(tmp_path / "cmp"))
    assert code == 0, err
    header, _, *rows = out.splitlines()
    assert "success rate" in header and "AT" in header
    assert any(r.startswith("random ") for r in rows) and any(r.startswith("fixed:Question") for r in rows)
    assert set(json.loads((tmp_path / "all.json").read_text())) == {"random", "fixed:Question"}
    assert (tmp_path / "cmp" / "intensity.png").is_file()

    # a second evaluate into the same folder refuses to mix runs
    code, _, err = run(capsys, "evaluate", *STAGE, "--policy", "random", "--episodes", "2", "--out", str(out_dir))
    assert_one_line_error(code, err, "--overwrite")


def test_evaluate_from_a_config_file(capsys, tmp_path):
    cfg = tmp_path / "ev.yaml"
    cfg.write_text(f"env_id: esc_env/ESCStage-v0\npolicy: [random]\nepisodes: 30\nmax_turns: 4\nout: {tmp_path / 'o'}\nno_progress: true\n")
    code, out, err = run(capsys, "evaluate", "--config", str(cfg), "--episodes", "3")  # the command line wins
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "random" / "metrics.json").read_text())["n_episodes"] == 3


def test_checked_in_evaluation_configs_use_known_keys():
    parser = build_parser()
    subs = parser.parse_args(["compare", "x"])._subparsers
    files = sorted(CONFIGS.glob("eval*.yaml"))
    assert files
    for f in files:
        command = "evaluate-ref" if f.name.startswith("eval_ref") else "evaluate"
        dests = {a.dest for a in subs[command]._actions}
        assert set(load_config(f)) <= dests, f


def test_eval_stage_config_runs(capsys, tmp_path):
    code, out, err = run(capsys, "evaluate", "--config", str(CONFIGS / "eval_stage.yaml"), "--episodes", "4",
                         "--out", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert (tmp_path / "plots" / "success_by_turn.png").is_file()


# ----------------------------------------------------------------------------- rollout
def test_rollout_writes_transcripts(capsys, tmp_path):
    path = tmp_path / "r.jsonl"
    code, out, err = run(capsys, "rollout", *STAGE, "--policy", "fixed:Question", "--episodes", "3", "--max-turns", "3",
                         "--out", str(path), "--show")
    assert code == 0, err
    recs = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["reset_seed"])
    assert [r["reset_seed"] for r in recs] == [0, 1, 2]
    assert all(r["policy"] == "fixed:Question" and r["strategies"] and set(r["strategies"]) == {"Question"} for r in recs)
    assert out.count("=== episode") == 3 and "Supporter [Question]:" in out
    code, _, err = run(capsys, "rollout", *STAGE, "--policy", "random", "--episodes", "1", "--out", str(path))
    assert_one_line_error(code, err, "--append")


# ----------------------------------------------------------------------------- evaluate-ref
def test_evaluate_ref_strategy_only(capsys, tmp_path):
    code, out, err = run(capsys, "evaluate-ref", "--policy", "fixed:Reflection of feelings", "--split", str(SAMPLE),
                         "--backend", "none", "--no-generate", "--no-ppl", "--no-progress", "--out", str(tmp_path))
    assert code == 0, err
    m = json.loads((tmp_path / "metrics_ref.json").read_text())
    assert m["n_points"] == 4 and m["strategy"]["accuracy"] == pytest.approx(25.0)
    # Reflection of feelings: tp 1, fp 3 -> F1 0.4; the other 3 reference classes: 0
    assert m["strategy"]["macro_f1"] == pytest.approx(10.0)
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 4
    assert "strategy accuracy (%)" in out and "25.00" in out


# ----------------------------------------------------------------------------- train
def test_train_ppo_config_is_checked(capsys, tmp_path):
    code, out, err = run(capsys, "train", "ppo", "--config", str(CONFIGS / "ppo_stage.yaml"), "--dry-run")
    assert code == 0, err
    assert "is valid" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("total_timestep: 100\n")  # a prefix argparse itself would accept
    code, _, err = run(capsys, "train", "ppo", "--config", str(bad))
    assert_one_line_error(code, err, "unknown config key 'total_timestep'", "total_timesteps")
    bad.write_text("total_timesteps: lots\n")
    code, _, err = run(capsys, "train", "ppo", "--config", str(bad))
    assert_one_line_error(code, err, "total_timesteps", "invalid int")


@pytest.mark.parametrize("path", sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name.split("_")[0] in ("aflow", "rlff", "ppo")))
def test_checked_in_training_configs_are_valid(capsys, path):
    code, out, err = run(capsys, "train", path.split("_")[0], "--config", str(CONFIGS / path), "--dry-run")
    assert code == 0, err
    assert "is valid" in out


def test_train_errors(capsys, tmp_path):
    code, _, err = run(capsys, "train", "ppo", "--config", str(tmp_path / "missing.yaml"))
    assert_one_line_error(code, err, "config file not found")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    code, _, err = run(capsys, "train", "ppo", "--config", str(tmp_path / "list.yaml"))
    assert_one_line_error(code, err, "must be a mapping")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    code, _, err = run(capsys, "train", "ppo", "--config", str(tmp_path / "broken.yaml"))
    assert_one_line_error(code, err, "not valid YAML")
    code, _, err = run(capsys, "train", "sac", "--config", str(tmp_path / "list.yaml"))
    assert_one_line_error(code, err, "invalid choice")


# ----------------------------------------------------------------------------- user errors
@pytest.mark.parametrize(
    "argv, needles",
    [
        (["evaluate", *STAGE, "--policy", "bogus"], ["unknown policy 'bogus'"]),
        (["evaluate", *STAGE, "--policy", "fixed:Hug"], ["'Hug'", "Question"]),
        (["evaluate", *STAGE, "--policy", "sb3:/no/such/model.zip"], ["sb3 checkpoint not found: /no/such/model.zip"]),
        (["evaluate", *STAGE, "--policy", "aflow:/no/such/ckpt"], ["aflow checkpoint not found"]),
        (["rollout", *STAGE, "--policy", "rlff:/no/such/ckpt"], ["rlff checkpoint not found"]),
        (["evaluate", *STAGE, "--policy", "random", "--personas", "/no/such/personas.yaml"], ["/no/such/personas.yaml"]),
        (["evaluate", *STAGE, "--policy", "random", "--episodes", "0"], ["--episodes"]),
        (["evaluate", *STAGE, "--policy", "random", "--env-id", "esc_env/Nope-v0"], ["esc_env/Nope-v0"]),
        (["evaluate", *STAGE], ["no policy"]),
        (["evaluate", *STAGE, "--policy", "random", "--bogus-flag"], ["--bogus-flag"]),
        (["evaluate-ref", "--policy", "random", "--split", "/no/such/esconv.jsonl", "--backend", "none"], ["/no/such/esconv.jsonl"]),
        (["compare", "/no/such/run"], ["run folder not found"]),
        (["evaluate", *STAGE, "--policy", "random", "--affect-judge", "prompted"], ["--affect-judge needs an LLM environment"]),
        (["evaluate", "--policy", "random", "--affect-judge", "calibratd", "--episodes", "1"], ["affect_judge must be one of", "'calibratd'"]),
    ],
)
def test_user_errors_are_one_line_exit_2(capsys, tmp_path, argv, needles):
    code, _, err = run(capsys, *[a.replace("TMP", str(tmp_path)) for a in argv])
    assert_one_line_error(code, err, *needles)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage\x81", b"- {id: x}\n", None])
def test_unreadable_persona_file(capsys, tmp_path, content):
    path = tmp_path / "personas.yaml"
    if content is None:
        path.mkdir()  # a folder where a file is expected
    else:
        path.write_bytes(content)
    code, _, err = run(capsys, "evaluate", *STAGE, "--policy", "random", "--personas", str(path), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, str(path))


def test_unknown_config_key(capsys, tmp_path):
    cfg = tmp_path / "ev.yaml"
    cfg.write_text("policy: random\nepisode: 3\n")
    code, _, err = run(capsys, "evaluate", "--config", str(cfg))
    assert_one_line_error(code, err, "unknown config key 'episode'", "episodes")
    cfg.write_text("policy: random\nepisodes: many\n")
    code, _, err = run(capsys, "evaluate", "--config", str(cfg))
    assert_one_line_error(code, err, "'episodes'", "invalid int")


# ----------------------------------------------------------------------------- the LLM env (embedded model)
def test_evaluate_llm_env_tiny(capsys, tmp_path):
    pytest.importorskip("agents.supporter")
    out_dir = tmp_path / "llm"
    code, out, err = run(capsys, "evaluate", "--backend", "embedded", "--max-turns", "1", "--episodes", "2", "--num-envs", "2",
                         "--policy", "llm", "--out", str(out_dir), "--no-progress")
    assert code == 0, err
    for name in ("llm",):
        m = json.loads((out_dir / name / "metrics.json").read_text())
        assert m["n_episodes"] == 2 and m["env_id"] == "esc_env/ESC-v0"
        eps = [json.loads(line) for line in (out_dir / name / "episodes.jsonl").read_text().splitlines()]
        assert all(e["length"] == 1 and len(e["episode"]["turns"]) == 3 for e in eps)
        assert all(1.0 <= x <= 5.0 for e in eps for x in e["intensities"])


def test_evaluate_ref_llm_tiny(capsys, tmp_path):
    pytest.importorskip("agents.supporter")
    code, out, err = run(capsys, "evaluate-ref", "--policy", "llm", "--split", str(SAMPLE), "--limit", "2", "--backend", "embedded",
                         "--no-meteor", "--no-progress", "--out", str(tmp_path))
    assert code == 0, err
    m = json.loads((tmp_path / "metrics_ref.json").read_text())
    assert m["strategy"]["n"] == 2
    assert m["text"]["n"] == 2 and 0.0 <= m["text"]["rougeL"] <= 100.0
    assert m["perplexity"]["perplexity"] > 1.0 and m["perplexity"]["tokens"] > 0
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all(p["prediction"] for p in preds)


# ----------------------------------------------------------------------------- backend errors and bugs
def test_unreachable_server_is_one_line_naming_the_url(capsys, tmp_path):
    from llama_server import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    # the first request is the supporter's, at the first step; the backend's own retries take about 12 s
    code, _, err = run(capsys, "evaluate", "--backend", f"openai:{url}#m", "--policy", "random", "--episodes", "1",
                       "--max-turns", "1", "--out", str(tmp_path), "--no-progress")
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("esc-env evaluate: backend error: ") and url in lines[0]


@pytest.fixture
def fake_trainer(monkeypatch, tmp_path):
    """A trainer module (``train_from_config``) that fails the way its config says."""
    (tmp_path / "fake_trainer_mod.py").write_text(
        "from agents.backends import BackendError\n"
        "CONFIG_KEYS = ['fail']\n"
        "def train_from_config(config):\n"
        "    kind = config['fail']\n"
        "    if kind == 'backend':\n"
        "        raise BackendError('vllm:/no/such/model: the model cannot be loaded')\n"
        "    if kind == 'bug':\n"
        "        raise ValueError('shapes (3,) and (4,) do not match')\n"
        "    if kind == 'missing':\n"
        "        open('/no/such/data.jsonl')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(__import__("esc_cli.commands.train", fromlist=["TRAINERS"]).TRAINERS, "ppo", "fake_trainer_mod")
    return tmp_path


def test_a_backend_error_in_a_trainer_is_one_line(capsys, fake_trainer):
    (fake_trainer / "c.yaml").write_text("fail: backend\n")
    code, _, err = run(capsys, "train", "ppo", "--config", str(fake_trainer / "c.yaml"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "backend error: vllm:/no/such/model: the model cannot be loaded" in err
    (fake_trainer / "c.yaml").write_text("fail: missing\n")
    code, _, err = run(capsys, "train", "ppo", "--config", str(fake_trainer / "c.yaml"))
    assert_one_line_error(code, err, "/no/such/data.jsonl")


def test_a_bug_in_a_trainer_keeps_its_traceback(capsys, fake_trainer):
    (fake_trainer / "c.yaml").write_text("fail: bug\n")
    with pytest.raises(ValueError, match="do not match"):  # not turned into a one-line user error
        main(["train", "ppo", "--config", str(fake_trainer / "c.yaml")])
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- only the user's mistakes are one line
def test_a_bad_policy_spec_is_one_line_and_a_user_input_error(capsys):
    from agents.errors import UserInputError
    from esc_cli.policy_specs import PolicySpecError

    code, _, err = run(capsys, "rollout", *STAGE, "--policy", "fixd:Question")
    assert_one_line_error(code, err, "esc-env rollout: error: unknown policy 'fixd:Question'")
    assert issubclass(PolicySpecError, UserInputError) and issubclass(UserInputError, ValueError)


def test_a_value_error_from_inside_a_command_keeps_its_traceback(capsys, monkeypatch, tmp_path):
    """A ValueError that is not about the user's input is a bug: main() lets it through."""
    import esc_env.evaluation.interactive as interactive

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(interactive, "evaluate_policy", broken)
    with pytest.raises(ValueError, match="could not be broadcast"):
        main(["evaluate", *STAGE, "--policy", "random", "--episodes", "2", "--out", str(tmp_path)])
    assert capsys.readouterr().err == ""
    # a KeyError too (once turned into a one-line user error)
    monkeypatch.setattr(interactive, "run_episodes", lambda *a, **k: {}["persona_id"])
    with pytest.raises(KeyError):
        main(["rollout", *STAGE, "--policy", "random", "--episodes", "1", "--out", str(tmp_path / "r.jsonl")])


def test_a_bug_in_a_real_trainer_keeps_its_traceback_and_its_user_errors_are_one_line(capsys, monkeypatch, tmp_path):
    import policies.sb3.train as ppo_train
    from agents.errors import UserInputError

    cfg = tmp_path / "ppo.yaml"
    cfg.write_text("total_timesteps: 64\n")

    def bug(argv):
        raise ValueError("expected 2D input, got 3D")

    monkeypatch.setattr(ppo_train, "main", bug)
    with pytest.raises(ValueError, match="expected 2D input"):
        main(["train", "ppo", "--config", str(cfg)])
    assert capsys.readouterr().err == ""

    def bad_input(argv):
        raise UserInputError("encoder 'hashing:abc': the dimension must be an integer")

    monkeypatch.setattr(ppo_train, "main", bad_input)
    code, _, err = run(capsys, "train", "ppo", "--config", str(cfg))
    assert_one_line_error(code, err, "esc-env train: error: encoder 'hashing:abc'")


def test_bad_strategy_set_and_backend_spec_are_user_errors(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", *STAGE, "--policy", "random", "--strategies", "esconvv", "--episodes", "1")
    assert_one_line_error(code, err, "unknown strategy set 'esconvv'")
    code, _, err = run(capsys, "evaluate-ref", "--policy", "random", "--split", str(SAMPLE), "--limit", "1", "--backend", "openai:http://x",
                       "--no-meteor", "--no-progress")
    assert_one_line_error(code, err, "name the served model after '#'")


# ----------------------------------------------------------------------------- trainers are modules, not scripts
def test_trainers_are_importable_modules_with_a_parser_and_main():
    import importlib

    from esc_cli.commands.train import TRAINERS, parser_keys

    for kind, target in TRAINERS.items():
        module = importlib.import_module(target)
        parser = module.build_parser()
        assert callable(module.main), kind
        keys = parser_keys(parser)
        assert "seed" in keys and "help" not in keys, (kind, sorted(keys))
        options = [a for a in parser._actions if a.dest != "help"]
        assert all(a.help for a in options), (kind, [a.dest for a in options if not a.help])


def test_the_examples_are_thin_scripts_over_the_trainer_modules():
    import importlib.util

    for script, target in [("train_aflow.py", "policies.aflow.train"), ("train_ppo_sb3.py", "policies.sb3.train"),
                           ("train_rlff.py", "policies.rlff.train"), ("train_calibrated_judge.py", "agents.judges.train_calibrated")]:
        spec = importlib.util.spec_from_file_location(f"example_{script[:-3]}", REPO / "examples" / script)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        trainer = __import__(target, fromlist=["main"])
        assert mod.main is trainer.main and mod.build_parser is trainer.build_parser, script
        assert len((REPO / "examples" / script).read_text().splitlines()) < 40, script


def test_config_to_argv_by_hand():
    import argparse

    from esc_cli.config import config_to_argv

    p = argparse.ArgumentParser()
    p.add_argument("--search", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--eval-valid", action="store_true")
    config = {"total_timesteps": 1000, "env_kwargs": {"a": 1}, "search": False, "eval_valid": True, "out": None, "fast": False}
    assert config_to_argv(config, p) == ["--total-timesteps", "1000", "--env-kwargs", '{"a": 1}', "--no-search", "--eval-valid"]


def test_train_calibrated_judge_config_is_checked(capsys, tmp_path):
    code, out, err = run(capsys, "train", "calibrated-judge", "--config", str(CONFIGS / "calibrated_judge_nopolite.yaml"), "--dry-run")
    assert code == 0, err
    assert "is valid (10 keys)" in out
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("search: false\nk: 2\nhead: ridge\nalpha: 100\nlimit: 10\n")
    code, out, err = run(capsys, "train", "calibrated-judge", "--config", str(cfg), "--dry-run")
    assert code == 0, err
    assert "is valid (5 keys)" in out
    cfg.write_text("head: lasso\n")
    code, _, err = run(capsys, "train", "calibrated-judge", "--config", str(cfg), "--dry-run")
    assert_one_line_error(code, err, "config key 'head'", "invalid choice: 'lasso'")


# ----------------------------------------------------------------------------- deprecated names
def test_the_old_cli_module_warns_and_still_works(capsys):
    import esc_cli
    import esc_env.cli

    for name in ("main", "build_parser", "load_config", "check_config_keys", "UserError", "TRAINERS"):
        with pytest.warns(DeprecationWarning, match=f"esc_env.cli.{name} is deprecated"):
            assert getattr(esc_env.cli, name) is getattr(esc_cli, name)
    with pytest.warns(DeprecationWarning):
        old_main = esc_env.cli.main
    assert old_main(["compare", "--help"]) == 0
    assert "usage: esc-env compare" in capsys.readouterr().out
    with pytest.raises(AttributeError):
        esc_env.cli.no_such_name  # noqa: B018


def test_the_old_policy_spec_module_warns_and_still_works():
    import esc_env.evaluation.policies as old
    from esc_cli import policy_specs
    from policies.sb3 import SB3Policy

    for name in ("load_policy", "PolicySpecError", "POLICY_SPEC_HELP", "policy_slug"):
        with pytest.warns(DeprecationWarning, match=f"use esc_cli.policy_specs.{name}"):
            assert getattr(old, name) is getattr(policy_specs, name)
    with pytest.warns(DeprecationWarning, match="use policies.sb3.SB3Policy"):
        assert old.SB3Policy is SB3Policy
    with pytest.warns(DeprecationWarning):
        policy = old.load_policy("fixed:Question", strategies="esconv")
    assert policy.act_batch([{}, {}]) == [0, 0]


def test_python_dash_m_still_runs_the_old_and_new_cli():
    import subprocess
    import sys

    for module in ("esc_env.cli", "esc_cli"):
        out = subprocess.run([sys.executable, "-m", module, "compare", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("usage: esc-env compare")
