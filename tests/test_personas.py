"""Personas: the built-in set, user files and their errors, corpus conversion, PersonaBank."""

from __future__ import annotations

import json
import random
import runpy
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic_esconv import canonical_layout_sample
import yaml

from agents.personas import (
    Persona,
    PersonaBank,
    PersonaError,
    dump_persona_file,
    load_builtin_personas,
    load_persona_file,
    personas_from_esconv,
    personas_from_extes,
)
from agents.personas.extract import is_substantive, pick_background, pick_opening, reveals_facts
from agents.personas.loaders import guess_emotion
from agents.personas.persona import STYLE_TRAITS
from agents.datasets import load_esconv

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"

ESCONV_PROBLEMS = [
    "job crisis", "breakup with partner", "ongoing depression", "problems with friends",
    "academic pressure", "conflict with parents", "procrastination", "sleep problems",
    "alcohol abuse", "appearance anxiety", "school bullying", "issues with children",
]  # fmt: skip


def _persona(i: int = 0, **over) -> dict:
    d = {
        "id": f"t/{i}",
        "emotion_type": "anxiety",
        "problem_type": "job crisis",
        "situation": "My contract ends next month.",
        "initial_intensity": 3,
        "opening": "My contract is ending and nobody tells me if it will be renewed.",
        "background": ["I have worked there for two years."],
        "traits": ["guarded"],
    }
    d.update(over)
    return d


def _write(tmp_path: Path, name: str, content: "str | bytes") -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


# ----------------------------------------------------------------------------- built-in set
def test_builtin_size_and_coverage():
    ps = load_builtin_personas()
    assert len(ps) >= 12
    assert len({p.id for p in ps}) == len(ps)
    assert set(ESCONV_PROBLEMS) <= {p.problem_type for p in ps}
    assert len({p.emotion_type for p in ps}) >= 8
    assert {2, 3, 4, 5} <= {p.initial_intensity for p in ps}
    for p in ps:
        assert p.id.startswith("builtin/") and p.source == "builtin"
        assert p.opening and 2 <= len(p.background) <= 4
        assert p.traits and set(p.traits) <= set(STYLE_TRAITS)
    assert {"guarded", "talkative"} <= {t for p in ps for t in p.traits}


def test_builtin_returns_fresh_list():
    a = load_builtin_personas()
    a.clear()
    assert len(load_builtin_personas()) >= 12


# ----------------------------------------------------------------------------- user files
@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".jsonl"])
def test_round_trip_every_format(tmp_path, suffix):
    ps = [Persona.from_dict(_persona(i)) for i in range(3)]
    path = dump_persona_file(ps, tmp_path / f"p{suffix}")
    assert load_persona_file(path) == ps


def test_yaml_list_and_mapping_forms_agree(tmp_path):
    rows = [_persona(0), _persona(1, opening=None)]
    as_list = load_persona_file(_write(tmp_path, "list.yaml", yaml.safe_dump(rows)))
    as_map = load_persona_file(_write(tmp_path, "map.yaml", yaml.safe_dump({"personas": rows})))
    as_json = load_persona_file(_write(tmp_path, "map.json", json.dumps({"personas": rows})))
    strip = lambda ps: [p.to_dict() | {"source": ""} for p in ps]  # noqa: E731
    assert strip(as_list) == strip(as_map) == strip(as_json)
    assert as_list[1].opening is None
    assert as_list[0].background == ("I have worked there for two years.",)


def test_defaults_and_source(tmp_path):
    rec = {k: _persona()[k] for k in ("id", "emotion_type", "problem_type", "situation")}
    path = _write(tmp_path, "min.jsonl", json.dumps(rec) + "\n\n")
    (p,) = load_persona_file(path)
    assert p.initial_intensity == 4 and p.opening is None and p.background == () and p.traits == ()
    assert p.source == str(path)
    (q,) = load_persona_file(_write(tmp_path, "src.jsonl", json.dumps(rec | {"source": "clinic-notes"})))
    assert q.source == "clinic-notes"


def test_example_file_loads():
    bank = PersonaBank.from_source(REPO / "examples" / "personas" / "my_personas.yaml")
    assert len(bank) == 3 and bank.get("mine/thesis-01").opening is None


def test_example_script_runs(capsys):
    runpy.run_path(str(REPO / "examples" / "custom_persona.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "loaded 3 personas" in out and "field 'initial_intensity'" in out


def _error(path: Path) -> PersonaError:
    with pytest.raises(PersonaError) as e:
        load_persona_file(path)
    return e.value


@pytest.mark.parametrize(
    "over,drop,field,message",
    [
        ({}, "situation", "situation", "is missing"),
        ({}, "id", "id", "is missing"),
        ({"situation": 5}, None, "situation", "must be a non-empty string"),
        ({"emotion_type": "  "}, None, "emotion_type", "must be a non-empty string"),
        ({"background": "one fact"}, None, "background", "must be a list of non-empty strings"),
        ({"traits": None}, None, "traits", "must be a list of non-empty strings"),
        ({"traits": ["guarded", 3]}, None, "traits", "must be a list of non-empty strings"),
        ({"initial_intensity": "4"}, None, "initial_intensity", "must be an integer from 1 to 5"),
        ({"initial_intensity": True}, None, "initial_intensity", "must be an integer from 1 to 5"),
        ({"initial_intensity": 0}, None, "initial_intensity", "must be an integer from 1 to 5, got 0"),
        ({"initial_intensity": 6}, None, "initial_intensity", "must be an integer from 1 to 5, got 6"),
        ({"opening": ""}, None, "opening", "must be a non-empty string or null"),
        ({"mood": "low"}, None, "mood", "unknown field(s) ['mood']"),
    ],
)
def test_record_errors_name_file_record_and_field(tmp_path, over, drop, field, message):
    bad = _persona(1, **over)
    if drop:
        del bad[drop]
    path = _write(tmp_path, "people.yaml", yaml.safe_dump([_persona(0), bad]))
    err = _error(path)
    assert err.source == str(path) and err.field == field
    assert str(err.record).startswith("1")
    text = str(err)
    assert str(path) in text and "record 1" in text and f"field '{field}'" in text and message in text
    if drop != "id":
        assert "(id 't/1')" in text


def test_duplicate_ids(tmp_path):
    path = _write(tmp_path, "dup.json", json.dumps([_persona(0), _persona(1), _persona(0)]))
    err = _error(path)
    assert err.field == "id" and "record 2 (id 't/0')" in str(err)
    assert "duplicate id 't/0', first used by record 0" in str(err)


def test_jsonl_record_names_line(tmp_path):
    path = _write(tmp_path, "p.jsonl", json.dumps(_persona(0)) + "\n\n" + json.dumps(_persona(1, initial_intensity=9)) + "\n")
    assert "record 1 (line 3) (id 't/1'), field 'initial_intensity'" in str(_error(path))


def test_bad_utf8_names_byte_offset(tmp_path):
    head = b"- id: a\n  situation: caf"
    path = _write(tmp_path, "latin.yaml", head + b"\xe9\n")
    err = _error(path)
    assert str(path) in str(err) and f"byte offset {len(head)} (line 2)" in str(err)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.yaml", "", "file is empty"),
        ("blank.json", "  \n\n", "file is empty"),
        ("blank.jsonl", "\n", "file is empty"),
        ("comments.yaml", "# nothing here\n", "file is empty"),
        ("none.yaml", "personas: []\n", "no personas in the file"),
        ("none.json", "[]", "no personas in the file"),
        ("scalar.yaml", "hello\n", "expected a list of personas"),
        ("keys.yaml", "people: []\n", "exactly one key 'personas'"),
        ("extra.json", '{"personas": [], "version": 2}', "exactly one key 'personas'"),
        ("item.yaml", "- just a string\n", "record 0: expected a mapping of persona fields, got str"),
        ("syntax.yaml", "- id: a\n  situation: [unclosed\n", "invalid YAML at line 3"),
        ("syntax.json", '[\n{"id": "a",}\n]', "invalid JSON at line 2"),
        ("syntax.jsonl", json.dumps(_persona()) + "\n{oops\n", "record 1: invalid JSON on line 2"),
        ("notes.txt", "id: a", "unsupported file type '.txt'"),
    ],
)
def test_file_errors(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    err = _error(path)
    assert str(path) in str(err) and message in str(err)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        load_persona_file(tmp_path / "absent.yaml")


# ----------------------------------------------------------------------------- extraction rules
@pytest.mark.parametrize(
    "text,expected",
    [
        ("hello", False),
        ("Hi, how are you?", False),
        ("hello good afternoon.", False),
        ("I'm doing well, thanks! How about you?", False),
        ("i am sad", False),
        ("hi i need help. i'm under academic stress", True),
        ("My boss hinted at layoffs yesterday", True),
    ],
)
def test_is_substantive(text, expected):
    assert is_substantive(text) is expected


def test_reveals_facts():
    assert reveals_facts("My sister moved away last year and I have not seen her since.")
    assert not reveals_facts("What would you do if you were me and lost your job?")
    assert not reveals_facts("Thank you so much, I really appreciate your time and help today.")
    assert not reveals_facts("Good point, I will try going for a walk every single morning.")
    assert not reveals_facts("The weather has been grey and rainy for three long weeks now.")  # not first person


def test_pick_opening_and_background_on_canonical_sample():
    a, b = load_esconv(canonical_layout_sample())
    assert pick_opening(a.turns) == a.turns[2].text  # "hi" is skipped
    assert pick_opening(b.turns) == b.turns[0].text
    bg = pick_background(a.turns, pick_opening(a.turns))
    assert bg == (a.turns[4].text,)  # the closing thank-you is not a fact
    assert pick_opening([]) is None


def test_guess_emotion():
    assert guess_emotion("She is worried and a bit scared") == "anxiety"  # first keyword wins
    assert guess_emotion("He feels Terrified of the exam") == "fear"
    assert guess_emotion("Nothing matches here", default="sadness") == "sadness"


# ----------------------------------------------------------------------------- corpora
def test_personas_from_canonical_esconv_file():
    a, b = personas_from_esconv(canonical_layout_sample())
    assert a.id == "esconv:canonical_layout_sample/0" and a.source == "esconv:canonical_layout_sample"
    assert (a.emotion_type, a.problem_type, a.initial_intensity) == ("anxiety", "job crisis", 4)
    assert a.opening.startswith("My boss hinted at layoffs")
    assert b.initial_intensity == 3


def test_missing_intensity_defaults_to_4(tmp_path):
    recs = json.loads((canonical_layout_sample()).read_text(encoding="utf-8"))
    recs[1]["survey_score"] = {}
    path = tmp_path / "nosurvey.json"
    path.write_text(json.dumps(recs), encoding="utf-8")
    assert [p.initial_intensity for p in personas_from_esconv(path)] == [4, 4]
    assert personas_from_esconv(path, default_intensity=2)[1].initial_intensity == 2


@pytest.mark.esconv
def test_personas_from_esconv_valid(esconv_dir):
    dialogues = load_esconv("valid", data_dir=esconv_dir)
    ps = personas_from_esconv("valid", data_dir=esconv_dir)
    assert len(ps) == 195
    for p, d in zip(ps, dialogues, strict=True):
        assert p.id == d.id and p.source == "esconv:valid"
        assert (p.emotion_type, p.problem_type, p.situation) == (d.emotion_type, d.problem_type, d.situation)
        assert p.initial_intensity == (d.initial_intensity or 4)
        seeker = [t.text for t in d.turns if t.speaker == "seeker"]
        assert p.opening is None or (p.opening in seeker and is_substantive(p.opening))
        assert set(p.background) <= set(seeker) and p.opening not in p.background and len(p.background) <= 3
    openings = [p.opening for p in ps if p.opening]
    assert len(openings) >= 190
    assert not any(o.strip(" .!?").lower() in {"hi", "hello", "hey", "hi there"} for o in openings)


def test_personas_from_extes():
    ps = personas_from_extes(DATA / "extes_sample.json")
    assert [p.id for p in ps] == ["extes:extes_sample/0", "extes:extes_sample/1", "extes:extes_sample/2"]
    assert [p.emotion_type for p in ps] == ["anxiety", "distress", "fear"]
    assert [p.problem_type for p in ps] == ["Job Loss", "Breakups or Divorce", "Academic Stress"]
    assert {p.initial_intensity for p in ps} == {4}
    assert ps[1].opening.startswith("My husband told me")  # the bare "hello" is skipped
    assert personas_from_extes(DATA / "extes_sample.json", default_emotion="sadness")[1].emotion_type == "sadness"


# ----------------------------------------------------------------------------- PersonaBank
@pytest.fixture(scope="module")
def bank() -> PersonaBank:
    return PersonaBank.from_source("builtin")


def test_bank_sequence_protocol(bank):
    assert len(bank) == len(load_builtin_personas()) and bank.ids == [p.id for p in bank]
    assert bank[0].id == bank.ids[0] and isinstance(bank[:3], PersonaBank) and len(bank[:3]) == 3
    assert bank.ids[0] in bank and bank[0] in bank and "nobody" not in bank


def test_seeded_sampling_is_reproducible(bank):
    assert [bank.sample(s).id for s in range(20)] == [bank.sample(s).id for s in range(20)]
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [bank.sample(g1).id for _ in range(10)] == [bank.sample(g2).id for _ in range(10)]
    r1, r2 = random.Random(3), random.Random(3)
    assert [bank.sample(r1).id for _ in range(10)] == [bank.sample(r2).id for _ in range(10)]
    assert len({bank.sample(s).id for s in range(200)}) == len(bank)  # every persona can be drawn
    with pytest.raises(TypeError):
        bank.sample("seed")


def test_empty_bank_cannot_sample(bank):
    empty = bank.filter(problem_type="no such problem")
    assert len(empty) == 0
    with pytest.raises(ValueError, match="empty"):
        empty.sample(0)


def test_get_lists_close_ids(bank):
    assert bank.get("builtin/sleep-01").problem_type == "sleep problems"
    with pytest.raises(KeyError, match=r"builtin/sleep-01"):
        bank.get("builtin/sleep-1")


def test_filters(bank):
    jobs = bank.filter(problem_type="JOB CRISIS ")
    assert jobs.ids and all(p.problem_type == "job crisis" for p in jobs)
    both = bank.filter(problem_type=["Job Crisis", "school bullying"], emotion_type="Fear")
    assert set(both.ids) == {"builtin/job-mistake-02", "builtin/bullying-01"}
    high = bank.filter(min_intensity=5)
    assert high.ids and all(p.initial_intensity == 5 for p in high)
    mid = bank.filter(min_intensity=3, max_intensity=4)
    assert {p.initial_intensity for p in mid} == {3, 4}
    assert bank.filter().ids == bank.ids


def test_bank_rejects_duplicates(bank):
    with pytest.raises(PersonaError, match="duplicate id"):
        PersonaBank([bank[0], bank[1], bank[0]])
    with pytest.raises(TypeError):
        PersonaBank([bank[0], "not a persona"])


def test_from_source_forms(tmp_path, bank):
    path = dump_persona_file([Persona.from_dict(_persona(i)) for i in range(2)], tmp_path / "mine.yaml")
    assert PersonaBank.from_source(path).ids == ["t/0", "t/1"]
    assert PersonaBank.from_source(str(path)).ids == ["t/0", "t/1"]
    assert PersonaBank.from_source(list(bank)[:2]).ids == bank.ids[:2]
    assert PersonaBank.from_source(bank) is bank
    extes = PersonaBank.from_source(f"extes:{DATA / 'extes_sample.json'}")
    assert len(extes) == 3
    canon = PersonaBank.from_source(f"esconv:{canonical_layout_sample()}")
    assert len(canon) == 2


@pytest.mark.parametrize("spec", ["bultin", "esconv:", "data.csv", 42, ["not", "personas"]])
def test_from_source_unknown_lists_forms(spec):
    with pytest.raises(ValueError, match=r"accepted forms: \"builtin\", \"esconv:train\""):
        PersonaBank.from_source(spec)


@pytest.mark.esconv
def test_from_source_esconv_splits(esconv_dir, monkeypatch):
    assert len(PersonaBank.from_source("esconv:valid", data_dir=esconv_dir)) == 195
    monkeypatch.setenv("ESC_ENV_ESCONV_DIR", str(esconv_dir))
    train = PersonaBank.from_source("esconv:train")
    assert len(train) == 910 and train.ids[0] == "esconv:train/0"
    assert len(train.filter(problem_type="sleep problems")) == 19  # labelled "Sleep Problems" in the data
