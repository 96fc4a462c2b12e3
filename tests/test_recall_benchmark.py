"""The recall benchmark's generator, baselines and scoring (no servers)."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


data = _load("recall_data")
recall = _load("recall")


@pytest.fixture(scope="module")
def convs() -> list:
    return data.generate(3, 2, data.Sizes.quick())


def _fingerprint(conversations: list) -> list:
    return [
        ([(m.role, m.text, m.timestamp) for m in c.messages()], [(q.text, q.category, q.evidence) for q in c.questions])
        for c in conversations
    ]


def test_deterministic_for_a_seed_and_different_for_another(convs):
    again = data.generate(3, 2, data.Sizes.quick())
    assert _fingerprint(again) == _fingerprint(convs)
    other = data.generate(4, 2, data.Sizes.quick())
    assert _fingerprint(other) != _fingerprint(convs)
    assert convs[0].persona != convs[1].persona


def test_deterministic_across_hash_seeds():
    code = (
        "import hashlib, sys; sys.path.insert(0, sys.argv[1]); import recall_data as d; "
        "cs = d.generate(5, 1, d.Sizes.quick()); "
        "print(hashlib.sha256(repr([(m.text, m.timestamp) for m in cs[0].messages()]"
        " + [q.evidence for q in cs[0].questions]).encode()).hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code, str(BENCH)], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(digests) == 1
    assert len(next(iter(digests))) == len(hashlib.sha256().hexdigest())


def test_evidence_texts_are_messages_of_their_conversation(convs):
    for c in convs:
        texts = [m.text for m in c.messages()]
        for q in c.questions:
            assert q.evidence
            for e in (*q.evidence, *(t for _, t in q.related)):
                assert e in texts
                assert [t for t in texts if e in t] == [e], "evidence must not occur inside another message"


def test_message_texts_are_unique(convs):
    for c in convs:
        texts = [m.text for m in c.messages()]
        assert len(texts) == len(set(texts))


def test_every_category_appears(convs):
    for c in convs:
        assert {q.category for q in c.questions} == set(data.CATEGORIES)


def test_timestamps_are_aware_and_increasing(convs):
    for c in convs:
        stamps = [m.timestamp for m in c.messages()]
        assert all(t.tzinfo is not None for t in stamps)
        assert stamps == sorted(stamps)
        assert len({s.day for s in c.sessions}) == len(c.sessions)


def test_default_size_is_long():
    c = data.generate(0, 1)[0]
    assert 15 <= len(c.sessions) <= 20
    assert 200 <= len(c.turns()) <= 360
    assert 40 <= len(c.questions) <= 60


def test_short_evidence_pairs_an_assistant_question_with_a_short_user_answer(convs):
    for c in convs:
        roles = {m.text: m.role for m in c.messages()}
        for q in (q for q in c.questions if q.category == "short"):
            ask, answer = q.evidence
            assert roles[ask] == "assistant" and roles[answer] == "user"
            assert len(answer.split()) <= 5


def test_bm25_ranks_the_message_with_the_rare_word_first():
    docs = ["I had lunch with my sister today", "The weather was nice today",
            "We adopted a beagle named Rufus", "My sister likes the weather"]
    bm25 = recall.BM25(docs)
    scores = bm25.scores("what breed is the beagle?")
    assert recall.rank_by(scores)[0] == 2
    assert scores[2] > max(scores[0], scores[1], scores[3])
    assert bm25.scores("the a of")[0] == 0.0  # stopwords only


def test_rrf_combines_rankings():
    # 0 and 2 tie (1/61 + 1/63) just above 1 (2/62); ties go to the newer message
    assert recall.rrf([[0, 1, 2], [2, 1, 0]]) == [2, 0, 1]
    assert recall.rrf([[0, 1], [1, 0]], [1.0, 1.5]) == [1, 0]  # the weighted side wins


@pytest.mark.parametrize("budget", [1, 5, 50, 300, 1000, 2000])
def test_packer_never_exceeds_the_budget(convs, budget):
    tok = recall.get_tokenizer(recall.TOKENIZER_MODEL)
    index = recall.ConversationIndex(convs[0])
    for system in ("recency", "bm25"):
        order = index.ranking(system, "Where does my best friend live?")
        text = recall.pack([index.lines[i] for i in order], budget, tok)
        assert tok.count(text) <= budget
        if budget >= 300:
            assert tok.count(text) >= budget - 60  # and fills it
    assert tok.count(recall.recency_context(convs[0], budget, tok)) <= budget
    assert tok.count(recall.bm25_context(convs[0], "dog", budget, tok)) <= budget


def test_recency_takes_the_newest_messages(convs):
    tok = recall.get_tokenizer(recall.TOKENIZER_MODEL)
    text = recall.recency_context(convs[0], 200, tok)
    last = convs[0].messages()[-1]
    assert recall.render_line(last) in text
    assert convs[0].messages()[0].text not in text


def test_score_context_counts_hits():
    ev = ["I adopted a beagle named Rufus.", "Lisbon, definitely."]
    assert recall.score_context("User: I adopted a beagle named Rufus. and more", ev) == 0.5
    assert recall.score_context("Lisbon, definitely.\nI adopted a beagle named Rufus.", ev) == 1.0
    assert recall.score_context("I adopted a beagle named Rufus", ev) == 0.0  # a cut message is not a hit
    assert recall.score_context("anything", []) == 0.0
    assert recall.evidence_hits("x Lisbon, definitely. y", ev) == [False, True]


def test_update_docs_replaces_only_its_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## A\n\na\n\n## Recall\n\nold\n\n## B\n\nb\n", encoding="utf-8")
    recall.update_docs(path, "new body")
    text = path.read_text(encoding="utf-8")
    assert "old" not in text and "new body" in text
    assert text.index("## A") < text.index("## Recall") < text.index("## B")
    assert "\na\n" in text and "\nb\n" in text
    other = tmp_path / "other.md"
    other.write_text("# Benchmarks\n\n## A\n\na\n", encoding="utf-8")
    recall.update_docs(other, "body")
    assert other.read_text(encoding="utf-8").endswith("## Recall\n\nbody\n")


def test_dated_events_are_in_different_sessions(convs):
    for c in convs:
        session_of = {m.text: m.session for m in c.messages()}
        temporal = [session_of[q.evidence[0]] for q in c.questions if q.category == "temporal"]
        assert len(temporal) == len(set(temporal))
