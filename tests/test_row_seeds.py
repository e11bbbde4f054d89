"""Per-row seeds: a row's sampled reply depends on its own prompt and seed, never on its batch-mates.

Pure parts (seed normalisation, the nucleus filter, the exponential race) are checked by hand;
the rest runs the session's embedded SmolLM2 with sampling on and tiny token budgets.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.backends.base import Completion, GenerationParams, LLMBackend, ScoreResult, reply_seed
from agents.backends.row_sampling import RowSampler, mix_seed, row_generators, top_p_filter
from agents.dialogue import Turn

SAMPLE = {"temperature": 1.0, "max_new_tokens": 12}


PREFIX_TURNS = [
    Turn("seeker", "Hi. I lost my job last week."),
    Turn("supporter", "I'm sorry to hear that. How are you holding up?", "Question"),
    Turn("seeker", "Not well. I haven't told my family yet and I feel ashamed."),
]


class TextJudge:
    """Intensity 1-5 from every character of the dialogue (a deterministic function of the
    text: two dialogues that differ anywhere almost always get different values)."""

    def judge(self, dialogues):
        return np.asarray([1.0 + sum(map(ord, "".join(t.text for t in d))) % 401 / 100.0 for d in dialogues])


def _persona():
    from agents.personas import Persona

    return Persona(id="test/job", emotion_type="sadness", problem_type="job crisis",
                   situation="I lost my job last week and I feel ashamed to tell my family.", initial_intensity=4)


class SeededWords(LLMBackend):
    """A toy sampler for fast tests of the seed plumbing: each reply is words (and an
    ``Emotion: N`` line for the seeker's emotion tracker) drawn from a random stream seeded by
    the row's own seed and its prompt, as a real sampler with per-row streams would."""

    WORDS = ("calm", "tired", "work", "family", "sorry", "why", "maybe", "alone", "help", "today")

    def __init__(self) -> None:
        super().__init__()
        self.name = "seeded-words"

    def _generate(self, conversations, params):
        import json
        import zlib

        out = []
        for conv, seed in zip(conversations, params.row_seeds(len(conversations))):
            key = zlib.crc32(json.dumps(conv, sort_keys=True).encode())
            for j in range(params.n):
                rng = np.random.default_rng([key, reply_seed(seed, j)])
                words = " ".join(rng.choice(self.WORDS, size=6))
                out.append(Completion(f"I feel {words}.\nEmotion: {int(rng.integers(30, 60))}"))
        return out

    def _score(self, conversations, candidates, assistant_prefix):
        return ScoreResult(np.zeros((len(conversations), len(candidates[0]))), "exact")


# ----------------------------------------------------------------------------- pure
def test_seed_accepts_int_or_one_per_row_and_names_bad_values():
    assert GenerationParams(seed=np.int64(3)).seed == 3
    p = GenerationParams(seed=[4, np.int32(5)])
    assert p.seed == (4, 5) and p.row_seeds(2) == [4, 5]
    assert GenerationParams(seed=7).row_seeds(3) == [7, 7, 7]
    assert GenerationParams().row_seeds(2) == [None, None]
    assert p.replace(temperature=0.5).seed == (4, 5)
    with pytest.raises(ValueError, match="2 per-row seeds for 3 conversations"):
        p.row_seeds(3)
    for bad in ("12", 1.5, True, [1, "2"], [1, 2.0]):
        with pytest.raises(ValueError, match="GenerationParams.seed"):
            GenerationParams(seed=bad)
    assert reply_seed(10, 0) == 10 and reply_seed(10, 2) == 12


def test_mix_seed_is_stable_and_separates_neighbours():
    assert mix_seed(1, 2) == mix_seed(1, 2)
    values = {mix_seed(a, b) for a in range(4) for b in range(4)}
    assert len(values) == 16  # a + b would collide (1+2 == 2+1)
    assert mix_seed(1, 2) != mix_seed(2, 1)
    assert all(0 <= v < 2**63 for v in values)


def test_top_p_filter_by_hand():
    import torch

    # probabilities 0.5, 0.3, 0.15, 0.05 (in a shuffled order)
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    logits = probs.log()
    kept = torch.isfinite(top_p_filter(logits, 0.7))[0].tolist()
    assert kept == [False, True, False, True]  # 0.5 < 0.7, 0.5 + 0.3 reaches it: two tokens
    kept = torch.isfinite(top_p_filter(logits, 0.8))[0].tolist()
    assert kept == [False, True, False, True]  # mass before 0.15 is 0.8 >= 0.8: dropped
    kept = torch.isfinite(top_p_filter(logits, 0.81))[0].tolist()
    assert kept == [True, True, False, True]
    assert torch.isfinite(top_p_filter(logits, 0.1))[0].tolist() == [False, True, False, False]  # at least one
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_row_sampler_draws_each_row_from_its_own_stream():
    import torch

    probs = torch.tensor([0.7, 0.2, 0.1, 0.0])
    scores = probs.log().repeat(2, 1)
    # frequencies of the exponential race match the probabilities (one generator, many draws)
    sampler = RowSampler(row_generators([123], "cpu"))
    draws = [int(sampler.sample(scores[:1])[0]) for _ in range(3000)]
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert np.allclose(freq, [0.7, 0.2, 0.1, 0.0], atol=0.03) and freq[3] == 0
    # row 1 (seed 9) draws the same tokens alone as next to a row with another seed
    pair = RowSampler(row_generators([5, 9], "cpu"))
    alone = RowSampler(row_generators([9], "cpu"))
    flat = torch.zeros(2, 50)  # uniform over 50 tokens: every draw matters
    together = [int(pair.sample(flat)[1]) for _ in range(20)]
    solo = [int(alone.sample(flat[:1])[0]) for _ in range(20)]
    assert together == solo and len(set(solo)) > 5
    # the processor's output forces the drawn token under greedy decoding
    out = RowSampler(row_generators([1], "cpu"))(None, scores[:1])
    assert torch.isfinite(out).sum() == 1 and out.max() == 0.0
    with pytest.raises(ValueError, match="temperature"):
        RowSampler([], temperature=0.0)
    with pytest.raises(ValueError, match="2 rows of scores for 1 generators"):
        RowSampler(row_generators([1], "cpu")).sample(scores)


# ----------------------------------------------------------------------------- backend
def _chat(text):
    return [{"role": "user", "content": text}]


def test_transformers_rows_ignore_batch_mates(backend):
    convs = [_chat("Tell me about the sea."), _chat("Name a fruit."), _chat("How do you feel today?")]
    params = GenerationParams(temperature=1.0, max_new_tokens=12)
    batch = [c.text for c in backend.generate(convs, params.replace(seed=[11, 22, 33]))]
    alone = backend.generate([convs[1]], params.replace(seed=[22]))[0].text
    swapped = [c.text for c in backend.generate([convs[2], convs[1]], params.replace(seed=[33, 22]))]
    assert batch[1] == alone == swapped[1] and batch[2] == swapped[0]
    # a different seed gives a different sample; n replies use seed + j
    other = [backend.generate([convs[0]], params.replace(seed=s))[0].text for s in (12, 13, 14)]
    assert any(t != batch[0] for t in other)
    two = [c.text for c in backend.generate([convs[0]], params.replace(seed=[11], n=2))]
    assert two == [batch[0], other[0]]
    with pytest.raises(ValueError, match="2 per-row seeds for 3 conversations"):
        backend.generate(convs, params.replace(seed=[1, 2]))


# ----------------------------------------------------------------------------- fast: seed plumbing
@pytest.mark.parametrize("emotion", [None, "sage"])
def test_engine_gives_each_episode_its_own_seeds(emotion):
    """Seeker opening and replies, supporter utterances and the emotion tracker of episode
    ``s`` are the same alone and in a vector batch (toy sampler: any shared seed shows)."""
    from esc_env.env import ESCEnv
    from esc_env.vector import ESCVectorEnv

    kw = dict(personas=[_persona()], max_turns=3, seeker_params=SAMPLE, supporter_params=SAMPLE)
    kw.update(dict(seeker_emotion=emotion) if emotion else dict(affect_judge=TextJudge()))
    venv = ESCVectorEnv(3, SeededWords(), **kw)
    venv.reset(seed=[7, 100, 200])
    env = ESCEnv(SeededWords(), **kw)
    env.reset(seed=100)
    for action in (2, 4):
        vobs, _, _, _, vinfo = venv.step(np.array([5, action, 0]))
        obs, _, _, _, info = env.step(action)
        assert vobs["dialogue"][1] == obs["dialogue"]
        assert vinfo["intensity"]["after"][1] == pytest.approx(info["intensity"]["after"], abs=1e-9)
    assert vobs["dialogue"][0] != obs["dialogue"]


def test_seeker_opening_seeds_follow_their_personas():
    """A persona with a fixed opening takes no seed from the others (rows must not shift)."""
    from agents.personas import Persona
    from agents.seeker import SeekerAgent

    fixed = Persona(id="test/fixed", emotion_type="anxiety", problem_type="exams", situation="Exams soon.",
                    initial_intensity=3, opening="I have exams next week.")
    other = Persona(id="test/other", emotion_type="anger", problem_type="work", situation="My boss yelled at me.",
                    initial_intensity=4)
    agent = SeekerAgent(SeededWords(), params=GenerationParams(**SAMPLE))
    many = agent.open([fixed, _persona(), other], seed=[1, 2, 3])
    assert many[0].text == "I have exams next week."
    assert [r.text for r in many[1:]] == [agent.open([_persona()], seed=[2])[0].text, agent.open([other], seed=[3])[0].text]
    with pytest.raises(ValueError, match="got 2 seeds for 3 personas"):
        agent.open([fixed, _persona(), other], seed=[1, 2])


def test_simulator_seeds_are_shared_by_candidates_and_ignore_batch_mates():
    """Common random numbers and batch independence of the simulator, on the toy sampler."""
    from esc_env.env import ESCEnv
    from policies.rlff.simulator import FutureSimulator, Prefix

    env = ESCEnv(SeededWords(), personas=[_persona()], action_mode="text", max_turns=20, affect_judge=TextJudge(),
                 seeker_params=SAMPLE, supporter_params=SAMPLE)
    sim = FutureSimulator(env, horizon=2, rollouts=3, seed=4)
    a = Prefix("pa", _persona(), list(PREFIX_TURNS), seed=1)
    b = Prefix("pb", _persona(), list(PREFIX_TURNS[:1]), seed=2)
    cands = ["That sounds really hard.", "What happened at work?"]
    alone = sim.simulate(sim.make_states([a]), [cands], ["pa"])[0]
    mixed = sim.simulate(sim.make_states([b, a]), [["Hello there."], cands], ["pb", "pa"])[1]
    fp = sim.future_policy
    for m in range(3):
        expected = [fp.strategy_of(sim.future_seed("pa", m, h)) for h in range(2)]
        for j in range(2):
            x, y = alone[j][m], mixed[j][m]
            assert x.seed == y.seed == sim.row_seed("pa", m)  # every candidate: the same seed at rollout m
            assert x.future_strategies == y.future_strategies == expected[: len(x.future_strategies)]
            assert (x.seeker_reply, x.intensity_after, x.reward) == (y.seeker_reply, y.intensity_after, y.reward)
    assert len({alone[0][m].seeker_reply for m in range(3)}) == 3  # rollouts draw differently
    assert len({sim.row_seed("pa", m) for m in range(3)}) == 3 and sim.row_seed("pa", 0) != sim.row_seed("pb", 0)
    assert len({tuple(alone[0][m].future_strategies) for m in range(3)} | {(-1,)}) > 2
    solo, _ = sim.propose_candidates([a], sim.make_states([a]), 2, include_reference=False)
    both, _ = sim.propose_candidates([b, a], sim.make_states([b, a]), 2, include_reference=False)
    assert solo[0] == both[1] and solo[0][0] != solo[0][1]


# ----------------------------------------------------------------------------- env
def test_episode_is_the_same_alone_and_in_a_vector_env_batch(backend):
    import esc_env
    from esc_env.env import ESCEnv

    kw = dict(max_turns=2, seeker_params=SAMPLE, supporter_params=SAMPLE)
    venv = esc_env.make_vec(3, backend=backend, **kw)
    venv.reset(seed=[7, 100, 200])
    env = ESCEnv(backend, **kw)
    obs, _ = env.reset(seed=100)
    vobs = None
    for action in (2, 4):
        vobs, *_ = venv.step(np.array([5, action, 0]))
        obs, *_ = env.step(action)
    assert vobs["dialogue"][1] == obs["dialogue"]
    assert vobs["dialogue"][0] != obs["dialogue"]  # another episode really shared the batch


# ----------------------------------------------------------------------------- simulator
def test_a_prefixs_futures_are_the_same_whatever_its_batch_mates(backend):
    from esc_env.env import ESCEnv
    from policies.rlff.simulator import FutureSimulator, Prefix

    env = ESCEnv(backend, personas=[_persona()], action_mode="text", max_turns=20, affect_judge=TextJudge(),
                 seeker_params=SAMPLE, supporter_params=SAMPLE)
    sim = FutureSimulator(env, horizon=1, rollouts=2, seed=4)
    a = Prefix("pa", _persona(), list(PREFIX_TURNS), seed=1)
    b = Prefix("pb", _persona(), list(PREFIX_TURNS[:1]), seed=2)
    c = Prefix("pc", _persona(), [Turn("seeker", "My dog died and I cannot stop crying.")], seed=3)
    cands = ["That sounds really hard.", "What happened at work?"]
    alone = sim.simulate(sim.make_states([a]), [cands], ["pa"])[0]
    mixed = sim.simulate(sim.make_states([b, a, c]), [["Hello there."], cands, ["I see.", "Go on."]],
                         ["pb", "pa", "pc"])[1]
    for j in range(2):
        for m in range(2):
            x, y = alone[j][m], mixed[j][m]
            # the judge reads every character: equal rewards mean equal future texts
            assert (x.seed, x.seeker_reply, x.future_strategies, x.intensity_after, x.reward) == \
                   (y.seed, y.seeker_reply, y.future_strategies, y.intensity_after, y.reward)
    # the sampled texts really differ between rollouts (sampling is on)
    assert alone[0][0].seeker_reply != alone[0][1].seeker_reply
    # the candidates proposed for a prefix do not depend on the other prefixes either
    solo, _ = sim.propose_candidates([a], sim.make_states([a]), 2, include_reference=False)
    both, _ = sim.propose_candidates([b, a], sim.make_states([b, a]), 2, include_reference=False)
    assert solo[0] == both[1]


def test_rlff_policy_rows_ignore_batch_mates():
    from policies.rlff.policy import RLFFPolicy

    pol = RLFFPolicy("embedded", max_reasoning_tokens=8, max_answer_tokens=10, batch_size=8, temperature=1.0)
    d1 = [Turn("seeker", "I failed my exam and I feel stupid.")]
    d2 = [Turn("seeker", "My sister and I had a fight.")]
    together = pol.reply_batch([d1, d2], seed=[5, 6])
    alone = pol.reply_batch([d2], seed=[6])
    assert (together[1].reasoning, together[1].answer) == (alone[0].reasoning, alone[0].answer)
    other = pol.reply_batch([d2], seed=[5])  # sampling is on: another seed, another reply
    assert (other[0].reasoning, other[0].answer) != (alone[0].reasoning, alone[0].answer)
    with pytest.raises(ValueError, match="1 seeds for 2 chats"):
        pol.reply_batch([d1, d2], seed=[5])


# ----------------------------------------------------------------------------- vLLM (in .venv-vllm)
@pytest.mark.vllm
def test_vllm_rows_ignore_batch_mates():
    """One ``SamplingParams`` per request: a row's sample is the same alone and in a batch."""
    import importlib.util

    from agents.backends import make_backend

    if importlib.util.find_spec("vllm") is None:
        from tests.vllm_server import require_vllm

        require_vllm("VLLMBackend")
    vb = make_backend("vllm:embedded?max_model_len=1024&kv_cache_gb=1")  # the engine test_vllm_backend.py shares
    convs = [_chat("Tell me about the sea."), _chat("Name a fruit."), _chat("How do you feel today?")]
    params = GenerationParams(temperature=1.0, max_new_tokens=12)
    batch = [c.text for c in vb.generate(convs, params.replace(seed=[11, 22, 33]))]
    alone = vb.generate([convs[1]], params.replace(seed=[22]))[0].text
    swapped = [c.text for c in vb.generate([convs[2], convs[1]], params.replace(seed=[33, 22]))]
    assert batch[1] == alone == swapped[1] and batch[2] == swapped[0]
    shared = [c.text for c in vb.generate(convs, params.replace(seed=11))]  # one int: every row's seed
    assert shared[0] == batch[0]
