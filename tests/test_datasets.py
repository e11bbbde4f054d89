"""ESConv and ExTES loaders: counts, both ESConv layouts, reference prefixes, located errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.synthetic_esconv import canonical_layout_sample

from agents.strategies import ESCONV
from agents.datasets import (
    DatasetError,
    DialogueRecord,
    ESConvDialogue,
    esconv_prefixes,
    load_esconv,
    load_extes,
    resolve_esconv_dir,
)

DATA = Path(__file__).parent / "data"
CANONICAL = canonical_layout_sample()
EXTES = DATA / "extes_sample.json"


def _raw(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _hf_record(**over) -> dict:
    rec = {
        "experience_type": "Current Experience",
        "emotion_type": "fear",
        "problem_type": "school bullying",
        "situation": "Some older kids wait for me after class.",
        "survey_score": {"seeker": {"initial_emotion_intensity": "5"}, "supporter": {}},
        "dialog": [
            {"text": "Hello, how can I help?", "speaker": "sys", "strategy": "Question"},
            {"text": "hey", "speaker": "usr"},
            {"text": "Kids at school keep taking my bag.", "speaker": "usr"},
            {"text": "That sounds frightening.", "speaker": "sys", "strategy": "Reflection of feelings"},
        ],
    }
    rec.update(over)
    return rec


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- real ESConv
@pytest.mark.esconv
@pytest.mark.parametrize("split,count", [("train", 910), ("valid", 195)])
def test_esconv_split_counts_and_ids(esconv_dir, split, count):
    dialogues = load_esconv(split, data_dir=esconv_dir)
    assert len(dialogues) == count
    assert [d.id for d in dialogues[:2]] == [f"esconv:{split}/0", f"esconv:{split}/1"]
    assert dialogues[-1].id == f"esconv:{split}/{count - 1}"
    assert {d.source for d in dialogues} == {f"esconv:{split}"}


@pytest.mark.esconv
def test_esconv_valid_fields_match_raw_file(esconv_dir):
    raw = _raw(esconv_dir / "valid.jsonl")
    dialogues = load_esconv("valid", data_dir=esconv_dir)
    for r, d in zip(raw, dialogues, strict=True):
        assert isinstance(d, ESConvDialogue)
        assert (d.emotion_type, d.problem_type, d.experience_type) == (r["emotion_type"], r["problem_type"], r["experience_type"])
        # every turn is kept, including consecutive turns of one speaker
        assert len(d.turns) == len(r["dialog"])
        for t, rt in zip(d.turns, r["dialog"], strict=True):
            assert t.speaker == {"usr": "seeker", "sys": "supporter"}[rt["speaker"]]
            assert t.text == rt["text"].strip()
            assert t.strategy == (rt["strategy"] if t.speaker == "supporter" else None)
        seeker = r["survey_score"].get("seeker", {})
        final = seeker.get("final_emotion_intensity")
        assert d.initial_intensity == int(seeker["initial_emotion_intensity"])
        assert d.final_intensity == (int(final) if final else None)
        assert d.feedback == {}  # the HF release has no per-turn feedback
    assert any(d.final_intensity is None for d in dialogues)
    assert any(a.speaker == b.speaker for d in dialogues for a, b in zip(d.turns, d.turns[1:]))


@pytest.mark.esconv
def test_esconv_strategies_are_the_esconv_set(esconv_dir):
    dialogues = load_esconv("valid", data_dir=esconv_dir)
    used = {s for d in dialogues for s in d.strategies}
    assert used == set(ESCONV.names)


@pytest.mark.esconv
def test_split_resolved_from_env_var(esconv_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ESC_ENV_ESCONV_DIR", str(esconv_dir))
    assert resolve_esconv_dir() == esconv_dir
    assert len(load_esconv("valid")) == 195
    # an explicit data_dir wins over the environment variable
    _write_jsonl(tmp_path / "valid.jsonl", [_hf_record()])
    assert len(load_esconv("valid", data_dir=tmp_path)) == 1


@pytest.mark.esconv
def test_prefixes_on_real_data(esconv_dir):
    dialogues = load_esconv("valid", data_dir=esconv_dir)[:20]
    points = list(esconv_prefixes(dialogues))
    expected = sum(1 for d in dialogues for i, t in enumerate(d.turns) if t.speaker == "supporter" and i >= 1)
    assert len(points) == expected
    for d, prefix, ref in points:
        i = len(prefix)
        assert d.turns[i] is ref and ref.speaker == "supporter"
        assert prefix == d.turns[:i] and i >= 1


# ----------------------------------------------------------------------------- layouts
def test_canonical_layout_sample():
    a, b = load_esconv(CANONICAL)
    assert a.id == "esconv:canonical_layout_sample/0" and b.id == "esconv:canonical_layout_sample/1"
    assert (a.initial_intensity, a.final_intensity, a.empathy, a.relevance) == (4, 2, 5, 4)
    assert (b.initial_intensity, b.final_intensity, b.empathy, b.relevance) == (3, None, None, None)
    assert [t.speaker for t in a.turns[:3]] == ["supporter", "seeker", "seeker"]
    assert a.strategies == ["Question", "Reflection of feelings", "Providing Suggestions"]
    assert a.turns[1].strategy is None
    assert a.feedback == {4: 4, 6: 5} and b.feedback == {2: 3}
    assert all(a.turns[i].speaker == "seeker" for i in a.feedback)
    assert a.intensity_change == -2 and b.intensity_change is None


def test_both_layouts_give_the_same_dialogue(tmp_path):
    canonical = json.loads(CANONICAL.read_text(encoding="utf-8"))
    hf = []
    for rec in canonical:
        turns = []
        for t in rec["dialog"]:
            turn = {"text": t["content"], "speaker": {"seeker": "usr", "supporter": "sys"}[t["speaker"]]}
            if "strategy" in t["annotation"]:
                turn["strategy"] = t["annotation"]["strategy"]
            turns.append(turn)
        hf.append({**rec, "dialog": turns})
    from_hf = load_esconv(_write_jsonl(tmp_path / "canonical_layout_sample.jsonl", hf))
    from_canonical = load_esconv(CANONICAL)
    for x, y in zip(from_hf, from_canonical, strict=True):
        assert x.turns == y.turns and x.id == y.id
        assert (x.initial_intensity, x.final_intensity) == (y.initial_intensity, y.final_intensity)
        assert x.feedback == {} and y.feedback  # only the canonical layout carries feedback


def test_hf_layout_with_empty_survey(tmp_path):
    recs = [_hf_record(), _hf_record(survey_score={"seeker": {}, "supporter": {}}), _hf_record(survey_score={})]
    recs[0]["survey_score"]["seeker"]["final_emotion_intensity"] = ""
    d0, d1, d2 = load_esconv(_write_jsonl(tmp_path / "tiny.jsonl", recs))
    assert (d0.initial_intensity, d0.final_intensity) == (5, None)
    assert d1.initial_intensity is None and d2.initial_intensity is None and d2.empathy is None
    assert d0.id == "esconv:tiny/0" and d2.id == "esconv:tiny/2"
    assert [t.text for t in d0.turns if t.speaker == "seeker"] == ["hey", "Kids at school keep taking my bag."]


def test_blank_lines_in_jsonl_are_skipped(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n" + json.dumps(_hf_record()) + "\n\n" + json.dumps(_hf_record()) + "\n", encoding="utf-8")
    assert [d.id for d in load_esconv(path)] == ["esconv:gaps/0", "esconv:gaps/1"]


def test_dialogue_record_is_shared():
    assert ESConvDialogue is DialogueRecord


# ----------------------------------------------------------------------------- ESConv errors
def test_missing_split_lists_available(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [_hf_record()])
    with pytest.raises(FileNotFoundError, match=r"'valid'.*\['train'\]"):
        load_esconv("valid", data_dir=tmp_path)


def test_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="ESC_ENV_ESCONV_DIR"):
        load_esconv("train", data_dir=tmp_path / "nope")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_esconv(tmp_path / "nope.jsonl")


def _bad(tmp_path: Path, name: str, content: "str | bytes") -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


@pytest.mark.parametrize(
    "name,content,pattern",
    [
        ("broken.jsonl", json.dumps(_hf_record()) + "\n{not json\n", r"broken\.jsonl, line 2: invalid JSON"),
        ("empty.jsonl", "  \n\n", r"empty\.jsonl: file is empty"),
        ("empty.json", "[]", r"empty\.json: the list of dialogues is empty"),
        ("dict.json", '{"dialog": []}', r"dict\.json: expected a JSON list"),
        ("syntax.json", '[\n{"a": 1,}\n]', r"syntax\.json, line 2: invalid JSON"),
        ("table.csv", "a,b\n", r"table\.csv: unsupported file type '\.csv'"),
    ],
)
def test_file_level_errors(tmp_path, name, content, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_esconv(_bad(tmp_path, name, content))


def test_bad_utf8_names_byte_offset(tmp_path):
    good = (json.dumps(_hf_record()) + "\n").encode()
    path = _bad(tmp_path, "latin.jsonl", good + b'{"situation": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=rf"latin\.jsonl, line 2: not valid UTF-8 at byte offset {len(good) + 18}"):
        load_esconv(path)


def _record_error(tmp_path: Path, rec: dict, pattern: str) -> None:
    path = _write_jsonl(tmp_path / "recs.jsonl", [_hf_record(), rec])
    with pytest.raises(DatasetError, match=pattern) as e:
        load_esconv(path)
    assert e.value.line == 2 and e.value.record == 1


def test_record_missing_field(tmp_path):
    rec = _hf_record()
    del rec["situation"]
    _record_error(tmp_path, rec, r"recs\.jsonl, line 2, record 1, field 'situation': is missing")


def test_record_bad_speaker(tmp_path):
    rec = _hf_record()
    rec["dialog"][2]["speaker"] = "bot"
    _record_error(tmp_path, rec, r"record 1, field 'dialog\[2\]\.speaker': expected one of .*'bot'")


def test_record_intensity_out_of_range(tmp_path):
    rec = _hf_record(survey_score={"seeker": {"initial_emotion_intensity": "7"}})
    _record_error(tmp_path, rec, r"field 'survey_score\.seeker\.initial_emotion_intensity': expected a rating 1-5, got '7'")


def test_record_intensity_not_a_number(tmp_path):
    rec = _hf_record(survey_score={"seeker": {"empathy": "high"}})
    _record_error(tmp_path, rec, r"field 'survey_score\.seeker\.empathy': expected a rating 1-5, got 'high'")


def test_record_text_wrong_type(tmp_path):
    rec = _hf_record()
    rec["dialog"][0]["text"] = 3
    _record_error(tmp_path, rec, r"field 'dialog\[0\]\.text': expected a string, got int")


def test_canonical_record_bad_feedback_names_record_index(tmp_path):
    canonical = json.loads(CANONICAL.read_text(encoding="utf-8"))
    canonical[1]["dialog"][2]["annotation"]["feedback"] = "9"
    path = tmp_path / "ESConv.json"
    path.write_text(json.dumps(canonical), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"ESConv\.json, record 1, field 'dialog\[2\]\.annotation\.feedback'"):
        load_esconv(path)


# ----------------------------------------------------------------------------- prefixes
def test_prefix_options():
    dialogues = load_esconv(CANONICAL)
    all_points = list(esconv_prefixes(dialogues, min_prefix_turns=0))
    assert len(all_points) == sum(len(d.strategies) for d in dialogues) == 5
    default = list(esconv_prefixes(dialogues))
    assert len(default) == 4  # the opening supporter greeting has no context
    assert all(len(p.prefix) >= 1 for p in default)
    only = list(esconv_prefixes(dialogues, strategies=["providing suggestions"]))
    assert [p.reference.text for p in only] == [dialogues[0].turns[5].text]
    assert only[0].prefix == dialogues[0].turns[:5]
    capped = list(esconv_prefixes(dialogues, max_per_dialogue=1))
    assert [p.dialogue.id for p in capped] == [d.id for d in dialogues]


# ----------------------------------------------------------------------------- ExTES
def test_extes_sample():
    ds = load_extes(EXTES)
    assert [d.id for d in ds] == ["extes:extes_sample/0", "extes:extes_sample/1", "extes:extes_sample/2"]
    a, b, c = ds
    assert a.problem_type == "Job Loss" and a.situation.startswith("The user was let go")
    assert a.emotion_type is None and a.initial_intensity is None and a.source == "extes:extes_sample"
    assert a.strategies == ["Empathetic Statements", "Clarification", "Emotional Validation", "Collaborative Planning"]
    assert b.turns[0].speaker == "supporter" and b.turns[0].strategy is None  # AI turn without a strategy
    assert [t.speaker for t in b.turns[1:3]] == ["seeker", "seeker"]
    assert len(c.turns) == 6 and c.turns[0].speaker == "seeker"


def _extes_error(tmp_path: Path, rec: dict, pattern: str) -> None:
    data = json.loads(EXTES.read_text(encoding="utf-8"))
    data.append(rec)
    path = tmp_path / "ext.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DatasetError, match=pattern):
        load_extes(path)


@pytest.mark.parametrize(
    "rec,pattern",
    [
        ({"scene": "s", "content": [{"User": "x"}]}, r"ext\.json, record 3, field 'description': is missing"),
        ({"scene": "s", "description": "d", "content": []}, r"record 3, field 'content': expected a non-empty list"),
        ({"scene": "s", "description": "d", "content": [{"User": "x", "AI": "y"}]}, r"field 'content\[0\]': needs exactly one"),
        ({"scene": "s", "description": "d", "content": [{"User": "x"}, {"Bot": "y"}]}, r"field 'content\[1\]': unknown key"),
        ({"scene": "s", "description": "d", "content": [{"AI": ""}]}, r"field 'content\[0\]\.AI': expected a non-empty string"),
        ({"scene": 3, "description": "d", "content": [{"User": "x"}]}, r"field 'scene': expected a non-empty string"),
    ],
)
def test_extes_errors(tmp_path, rec, pattern):
    _extes_error(tmp_path, rec, pattern)


def test_esc_env_datasets_is_the_same_code_as_agents_datasets():
    """The readers moved down to agents; esc_env.datasets (and its submodules) are the same objects."""
    import agents.datasets
    import agents.datasets.esconv
    import esc_env.datasets
    import esc_env.datasets.esconv
    from agents.errors import UserInputError
    from esc_env.datasets.record import DatasetError as OldDatasetError

    for name in agents.datasets.__all__:
        assert getattr(esc_env.datasets, name) is getattr(agents.datasets, name), name
    assert esc_env.datasets.esconv is agents.datasets.esconv
    assert OldDatasetError is agents.datasets.DatasetError
    assert issubclass(agents.datasets.DatasetError, UserInputError) and issubclass(agents.datasets.DatasetError, ValueError)
