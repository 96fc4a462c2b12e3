"""Evidence recall: does the context hold the messages needed to answer? Orchestrator vs retrieval baselines.

Synthetic long multi-session conversations (``recall_data.py``: planted facts, updates, dated and ordered
events, facts said by the assistant, short answers, filler) are ingested turn by turn into a
``MemoryOrchestrator`` with its default tiers (embedded Redis + PostgreSQL in a temporary directory,
offline embedder). Each question is then asked from a fresh session at several token budgets; a hit is an
evidence message whose text appears verbatim in the rendered context. The same questions go to baselines
over the raw messages: recency, BM25, dense (the project's local embedder), and their reciprocal-rank fusion.

    python benchmarks/recall.py                  # 4 conversations, budgets 1000/2000/4000 (a few minutes)
    python benchmarks/recall.py --quick          # 2 short conversations (under 2 minutes)
    python benchmarks/recall.py --write-docs     # and replace the "## Recall" section of docs/benchmarks.md
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import asyncio
import inspect
import json
import math
import platform
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from recall_data import CATEGORIES, Conversation, Message, Question, Sizes, generate  # noqa: E402

from memory_implementations import ContextRequest, MemoryConfig, MemoryOrchestrator  # noqa: E402
from memory_implementations.cli.bench import update_docs as bench_update_docs  # noqa: E402
from memory_implementations.errors import ConfigError  # noqa: E402
from memory_implementations.logging import configure_logging  # noqa: E402
from memory_implementations.providers import build_embedder, resolve_embedding_provider  # noqa: E402
from memory_implementations.tokens import Tokenizer, get_tokenizer  # noqa: E402

REPO = HERE.parent
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
DOCS_HEADING = "## Recall"
TOKENIZER_MODEL = "gpt-4o"
RRF_K = 60
ORCHESTRATOR = "orchestrator"
BASELINES = ("recency", "bm25", "dense", "fused", "fused-1.5")

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for from
further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
how how's i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most mustn't my myself no
nor not now of off on once only or other ought our ours ourselves out over own really same shan't she she'd she'll
she's should shouldn't so some such than that that's the their theirs them themselves then there there's these they
they'd they'll they're they've this those through to too under until up very was wasn't we we'd we'll we're we've
were weren't what what's when when's where where's which while who who's whom why why's will with won't would
wouldn't you you'd you'll you're you've your yours yourself yourselves also got get still ok okay yes yeah oh
""".split())
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


# --------------------------------------------------------------------------------------------------
# scoring


def evidence_hits(text: str, evidence: Sequence[str]) -> list[bool]:
    """For each evidence message, whether its exact text occurs in ``text``."""
    return [e in text for e in evidence]


def score_context(text: str, evidence: Sequence[str]) -> float:
    """Share of the evidence messages whose exact text occurs in ``text`` (0.0 .. 1.0)."""
    if not evidence:
        return 0.0
    hits = evidence_hits(text, evidence)
    return sum(hits) / len(hits)


# --------------------------------------------------------------------------------------------------
# baselines


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without English stopwords."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


class BM25:
    """Okapi BM25 over short documents (one message each)."""

    def __init__(self, docs: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [tokenize(d) for d in docs]
        self.lengths = [len(d) for d in self.docs]
        self.avgdl = (sum(self.lengths) / len(self.lengths)) if self.docs else 0.0
        self.tf: list[dict[str, int]] = []
        df: dict[str, int] = {}
        for doc in self.docs:
            counts: dict[str, int] = {}
            for w in doc:
                counts[w] = counts.get(w, 0) + 1
            self.tf.append(counts)
            for w in counts:
                df[w] = df.get(w, 0) + 1
        n = len(self.docs)
        self.idf = {w: math.log((n - f + 0.5) / (f + 0.5) + 1.0) for w, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = list(dict.fromkeys(tokenize(query)))
        out: list[float] = []
        for counts, length in zip(self.tf, self.lengths, strict=True):
            s = 0.0
            norm = self.k1 * (1 - self.b + self.b * length / self.avgdl) if self.avgdl else self.k1
            for t in terms:
                f = counts.get(t)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + norm)
            out.append(s)
        return out


def rank_by(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; ties go to the newer (later) message."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], -i))


def rrf(rankings: Sequence[Sequence[int]], weights: Sequence[float] | None = None, k: int = RRF_K) -> list[int]:
    """Reciprocal-rank fusion: ``sum(w / (k + rank))`` with ranks from 1."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, i in enumerate(ranking, start=1):
            fused[i] = fused.get(i, 0.0) + w / (k + rank)
    return sorted(fused, key=lambda i: (-fused[i], -i))


def render_line(msg: Message) -> str:
    """``[2025-03-14] User: ...`` (the session's date)."""
    role = "User" if msg.role == "user" else "Assistant"
    return f"[{msg.timestamp.date().isoformat()}] {role}: {msg.text}"


def pack(lines: Sequence[str], budget: int, tokenizer: Tokenizer) -> str:
    """Greedily take ``lines`` (best first) while they fit in ``budget`` tokens, joined by newlines.

    A line that does not fit is skipped and later (shorter) ones may still go in; the result never counts
    more than ``budget`` tokens.
    """
    chosen: list[int] = []
    used = 0
    for i, line in enumerate(lines):
        cost = tokenizer.count(line + "\n")
        if used + cost <= budget:
            chosen.append(i)
            used += cost
        if budget - used < 8:
            break
    text = "\n".join(lines[i] for i in chosen)
    while chosen and tokenizer.count(text) > budget:  # only for tokenizers whose counts do not add up
        chosen.pop()
        text = "\n".join(lines[i] for i in chosen)
    return text


@dataclass
class ConversationIndex:
    """One conversation's messages, ready for the baselines (``vectors``: the dense embeddings, optional)."""

    conversation: Conversation
    vectors: np.ndarray | None = None
    messages: list[Message] = field(init=False)
    lines: list[str] = field(init=False)
    bm25: BM25 = field(init=False)

    def __post_init__(self) -> None:
        self.messages = self.conversation.messages()
        self.lines = [render_line(m) for m in self.messages]
        self.bm25 = BM25([m.text for m in self.messages])

    def ranking(self, system: str, query: str, query_vector: np.ndarray | None = None) -> list[int]:
        """Message indices, best first, for one of ``BASELINES``."""
        n = len(self.messages)
        if system == "recency":
            return list(range(n - 1, -1, -1))
        if system == "bm25":
            return rank_by(self.bm25.scores(query))
        if self.vectors is None or query_vector is None:
            raise ValueError(f"{system} needs message and query embeddings")
        dense = rank_by((self.vectors @ query_vector).tolist())
        if system == "dense":
            return dense
        bm25 = rank_by(self.bm25.scores(query))
        if system == "fused":
            return rrf([bm25, dense])
        if system == "fused-1.5":
            return rrf([bm25, dense], [1.0, 1.5])
        raise ValueError(f"unknown baseline {system!r}")

    def context(
        self, system: str, query: str, budget: int, tokenizer: Tokenizer, query_vector: np.ndarray | None = None
    ) -> str:
        """The baseline's context: its ranking packed into ``budget`` tokens, in time order."""
        order = self.ranking(system, query, query_vector)
        ranked = [self.lines[i] for i in order]
        chosen_text = pack(ranked, budget, tokenizer)
        kept = set(chosen_text.split("\n")) if chosen_text else set()
        return "\n".join(line for line in self.lines if line in kept)  # lines are unique: texts are


def recency_context(conv: Conversation, budget: int, tokenizer: Tokenizer | None = None) -> str:
    """The newest messages that fit in ``budget`` tokens."""
    return ConversationIndex(conv).context("recency", "", budget, tokenizer or get_tokenizer(TOKENIZER_MODEL))


def bm25_context(conv: Conversation, query: str, budget: int, tokenizer: Tokenizer | None = None) -> str:
    """The messages BM25 ranks best for ``query`` that fit in ``budget`` tokens."""
    return ConversationIndex(conv).context("bm25", query, budget, tokenizer or get_tokenizer(TOKENIZER_MODEL))


# --------------------------------------------------------------------------------------------------
# running


@dataclass
class Outcome:
    """One system's context for one question at one budget."""

    recall: float
    complete: bool
    tokens: int
    stale: bool | None = None  # update questions: the superseded statement present, the update absent
    latency_ms: float | None = None
    degraded: bool = False


@dataclass
class Run:
    conversations: list[Conversation]
    budgets: list[int]
    outcomes: dict[str, dict[int, dict[str, Outcome]]] = field(default_factory=dict)  # system -> budget -> qid
    timings: dict[str, float] = field(default_factory=dict)
    orchestrator: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, system: str, budget: int, q: Question, text: str, tokens: int, **extra: Any) -> None:
        hits = evidence_hits(text, q.evidence)
        stale = None
        if q.category == "update":
            old = [t for label, t in q.related if label == "original"]
            stale = bool(old) and any(t in text for t in old) and not all(hits)
        self.outcomes.setdefault(system, {}).setdefault(budget, {})[q.id] = Outcome(
            sum(hits) / len(hits), all(hits), tokens, stale, **extra
        )


def _questions(convs: Sequence[Conversation]) -> list[Question]:
    return [q for c in convs for q in c.questions]


async def run_baselines(run: Run, tokenizer: Tokenizer, data_dir: str) -> None:
    t0 = time.perf_counter()
    systems = list(BASELINES)
    embedder = None
    try:
        embedder = build_embedder(MemoryConfig.from_any({"embedding_provider": "local", "data_dir": data_dir}))
    except ConfigError as exc:
        run.notes.append(f"dense baselines skipped: {exc}")
        systems = ["recency", "bm25"]
    embed_s = 0.0
    for conv in run.conversations:
        index = ConversationIndex(conv)
        qvecs: np.ndarray | None = None
        if embedder is not None:
            te = time.perf_counter()
            index.vectors = await embedder.embed([m.text for m in index.messages])
            qvecs = await embedder.embed([q.text for q in conv.questions])
            embed_s += time.perf_counter() - te
        for qi, q in enumerate(conv.questions):
            qv = qvecs[qi] if qvecs is not None else None
            for system in systems:
                order = index.ranking(system, q.text, qv)
                ranked = [index.lines[i] for i in order]
                for budget in run.budgets:
                    text = pack(ranked, budget, tokenizer)
                    run.record(system, budget, q, text, tokenizer.count(text))
    run.timings["baselines_s"] = time.perf_counter() - t0
    run.timings["baseline_embedding_s"] = embed_s


async def run_orchestrator(
    run: Run, data_dir: str, extra_config: dict[str, Any], *, fresh_dir: bool, temp_dir: bool
) -> None:
    config = {"data_dir": data_dir, **extra_config}
    orch = MemoryOrchestrator(config)
    t0 = time.perf_counter()
    await orch.initialize()
    info = run.orchestrator
    info["config"] = {**config, "data_dir": "<temp dir>"} if temp_dir else config
    info["tiers"] = [m.value for m in orch.enabled]
    info["embedding_provider"] = resolve_embedding_provider(orch.config)
    info["backends"] = "external" if (orch.config.redis_url or orch.config.database_url) else "embedded"
    info["startup_s"] = time.perf_counter() - t0
    with_created_at = "created_at" in inspect.signature(orch.store_turn).parameters
    info["created_at"] = with_created_at
    try:
        t0 = time.perf_counter()
        for conv in run.conversations:
            user_id = f"recall-u{conv.index}"
            if not fresh_dir:
                await orch.forget(user_id)
            for session in conv.sessions:
                session_id = f"recall-u{conv.index}-s{session.index}"
                for turn in session.turns:
                    kwargs: dict[str, Any] = {
                        "session_id": session_id, "user_id": user_id,
                        "user_message": turn.user.text, "assistant_message": turn.assistant.text,
                    }
                    if with_created_at:
                        kwargs["created_at"] = turn.user.timestamp
                    await orch.store_turn(**kwargs)
        info["store_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        await orch.flush()
        info["flush_s"] = time.perf_counter() - t1
        info["ingest_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        degraded_tiers: dict[str, int] = {}
        for conv in run.conversations:
            for qi, q in enumerate(conv.questions):
                for budget in run.budgets:
                    req = ContextRequest(query=q.text, session_id=f"recall-q{conv.index}-{qi}",
                                         user_id=f"recall-u{conv.index}", max_total_tokens=budget)
                    tq = time.perf_counter()
                    ctx = await orch.get_comprehensive_context(req)
                    ms = (time.perf_counter() - tq) * 1000
                    for tier in ctx.degraded:
                        degraded_tiers[tier] = degraded_tiers.get(tier, 0) + 1
                    tokens = ctx.token_counts.get("text", ctx.total_tokens)
                    run.record(ORCHESTRATOR, budget, q, ctx.text, tokens, latency_ms=ms, degraded=bool(ctx.degraded))
        info["queries_s"] = time.perf_counter() - t0
        info["degraded_tiers"] = degraded_tiers
    finally:
        await orch.close()


# --------------------------------------------------------------------------------------------------
# reporting


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def summarize(run: Run) -> dict[str, Any]:
    """Every number of the run as a JSON-ready dict."""
    questions = _questions(run.conversations)
    cats = {q.id: q.category for q in questions}
    systems: dict[str, Any] = {}
    for system, per_budget in run.outcomes.items():
        systems[system] = {}
        for budget, per_q in per_budget.items():
            outs = list(per_q.values())
            by_cat = {}
            for cat in CATEGORIES:
                sub = [o for qid, o in per_q.items() if cats[qid] == cat]
                if sub:
                    by_cat[cat] = {"n": len(sub), "recall": _mean([o.recall for o in sub]),
                                   "all_evidence": _mean([float(o.complete) for o in sub])}
            stale = [o.stale for o in outs if o.stale is not None]
            entry: dict[str, Any] = {
                "recall": _mean([o.recall for o in outs]),
                "all_evidence": _mean([float(o.complete) for o in outs]),
                "tokens_median": statistics.median(o.tokens for o in outs),
                "tokens_max": max(o.tokens for o in outs),
                "update_stale_only": _mean([float(s) for s in stale]) if stale else None,
                "by_category": by_cat,
            }
            lat = [o.latency_ms for o in outs if o.latency_ms is not None]
            if lat:
                lat.sort()
                entry["latency_ms_p50"] = statistics.median(lat)
                entry["latency_ms_p95"] = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
                entry["degraded_contexts"] = sum(o.degraded for o in outs)
            systems[system][str(budget)] = entry
    per_question = [
        {"id": q.id, "category": q.category, "question": q.text, "answer": q.answer, "evidence": list(q.evidence),
         "recall": {s: {str(b): run.outcomes[s][b][q.id].recall for b in run.budgets} for s in run.outcomes}}
        for q in questions
    ]
    return {"systems": systems, "questions": per_question}


def generator_stats(convs: Sequence[Conversation], tokenizer: Tokenizer) -> dict[str, Any]:
    tokens = [sum(tokenizer.count(m.text) for m in c.messages()) for c in convs]
    turns = [len(c.turns()) for c in convs]
    cats: dict[str, int] = {}
    for q in _questions(convs):
        cats[q.category] = cats.get(q.category, 0) + 1
    return {
        "conversations": len(convs),
        "sessions": sum(len(c.sessions) for c in convs),
        "turns": sum(turns),
        "turns_per_conversation": [min(turns), max(turns)],
        "messages": 2 * sum(turns),
        "questions": sum(cats.values()),
        "questions_by_category": {c: cats.get(c, 0) for c in CATEGORIES},
        "tokens": sum(tokens),
        "tokens_per_conversation": [min(tokens), max(tokens)],
        "first_day": min(c.sessions[0].day for c in convs).isoformat(),
        "last_day": max(c.sessions[-1].day for c in convs).isoformat(),
    }


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def render(run: Run, summary: dict[str, Any], gen: dict[str, Any], command: str, seed: int) -> str:
    systems = [s for s in (ORCHESTRATOR, *BASELINES) if s in summary["systems"]]
    budgets = [str(b) for b in run.budgets]
    detail = "2000" if "2000" in budgets else budgets[len(budgets) // 2]
    data = summary["systems"]
    info = run.orchestrator
    out: list[str] = []
    out.append(f"`{command}`")
    out.append("")
    cats = ", ".join(f"{c} {n}" for c, n in gen["questions_by_category"].items())
    def span(lo_hi: list[int]) -> str:
        return f"{lo_hi[0]:,}" if lo_hi[0] == lo_hi[1] else f"{lo_hi[0]:,}-{lo_hi[1]:,}"

    plural = "s" if gen["conversations"] != 1 else ""
    out.append(
        f"**Data.** Seed {seed}: {gen['conversations']} conversation{plural}, {gen['sessions']} sessions, "
        f"{gen['turns']:,} turns ({gen['messages']:,} messages, {span(gen['turns_per_conversation'])} turns and "
        f"{span(gen['tokens_per_conversation'])} tokens per conversation, {gen['first_day']} to "
        f"{gen['last_day']}); {gen['questions']} questions ({cats})."
    )
    if info:
        out.append("")
        out.append(
            f"**Orchestrator.** Tiers {', '.join(info['tiers'])}; embedder {info['embedding_provider']}; "
            f"{info['backends']} Redis + PostgreSQL; config `{json.dumps(info['config'])}`; "
            f"`store_turn(created_at=...)` "
            f"{'used' if info['created_at'] else 'not available (turns stored with the ingest time)'}. "
            f"Ingest {info['ingest_s']:.1f} s (store_turn {info['store_s']:.1f} s + flush {info['flush_s']:.1f} s), "
            f"queries {info['queries_s']:.1f} s."
        )
    out.append("")
    out.append("Mean evidence recall / share of questions with all evidence in the context:")
    out.append("")
    out.append("| system | " + " | ".join(f"recall @{b} | all @{b}" for b in budgets) + " |")
    out.append("|---|" + "---:|---:|" * len(budgets))
    for s in systems:
        cells = " | ".join(f"{_f(data[s][b]['recall'])} | {_f(data[s][b]['all_evidence'])}" for b in budgets)
        out.append(f"| {s} | {cells} |")
    out.append("")
    out.append(f"Mean recall by category at {detail} tokens (n = questions):")
    out.append("")
    present = [c for c in CATEGORIES if gen["questions_by_category"].get(c)]
    out.append("| system | " + " | ".join(f"{c} (n={gen['questions_by_category'][c]})" for c in present)
               + " | update: stale only |")
    out.append("|---|" + "---:|" * (len(present) + 1))
    for s in systems:
        cat = data[s][detail]["by_category"]
        cells = " | ".join(_f(cat[c]["recall"]) if c in cat else "-" for c in present)
        out.append(f"| {s} | {cells} | {_f(data[s][detail]['update_stale_only'])} |")
    out.append("")
    out.append("\"stale only\": share of update questions whose context holds the superseded statement but not "
               "the update.")
    out.append("")
    out.append("Median context tokens used (orchestrator: `ctx.token_counts['text']`):")
    out.append("")
    out.append("| system | " + " | ".join(f"@{b}" for b in budgets) + " |")
    out.append("|---|" + "---:|" * len(budgets))
    for s in systems:
        out.append(f"| {s} | " + " | ".join(f"{data[s][b]['tokens_median']:.0f}" for b in budgets) + " |")
    if ORCHESTRATOR in data:
        o = data[ORCHESTRATOR]
        out.append("")
        out.append("Orchestrator `get_comprehensive_context` latency (wall clock, one call at a time):")
        out.append("")
        out.append("| budget | p50 ms | p95 ms | contexts with a degraded tier |")
        out.append("|---:|---:|---:|---:|")
        for b in budgets:
            out.append(f"| {b} | {o[b]['latency_ms_p50']:.1f} | {o[b]['latency_ms_p95']:.1f} | "
                       f"{o[b]['degraded_contexts']} |")
        if info.get("degraded_tiers"):
            out.append("")
            out.append("Degraded tiers (count): " + ", ".join(f"{k} {v}" for k, v in info["degraded_tiers"].items()))
    for note in run.notes:
        out.append("")
        out.append(f"Note: {note}")
    return "\n".join(out) + "\n"


DOCS_INTRO = """`python benchmarks/recall.py [--quick] [--conversations N] [--budgets 1000 2000 4000] [--seed S] \
[--config-json '{...}'] [--json FILE] [--write-docs [FILE]]`

**What is measured.** Whether the context handed to the model contains the messages needed to answer a
question about a long conversation. `benchmarks/recall_data.py` generates (seeded, offline) long
multi-session conversations between a user and an assistant, each with its own persona: ~15-20 dated
sessions of 13-18 turns, filler chit-chat that reuses the facts' vocabulary (other people's dogs, a
friend in another city, company news) and short messages ("ok", "thanks!"). Planted among them: facts
said by the user; facts said by the assistant in answer to a request (recommendations, bookings);
updates that supersede an earlier value, some after a tentative mention; dated events; pairs of events
to order; answers spread over 2-3 sessions; and short answers to the assistant's question ("Which colour
did you go with?" / "Sage green."). Questions are paraphrased and labelled with the exact texts of
their evidence messages (for short answers both the question and the answer; for updates the update);
message texts are unique and no evidence text occurs inside another message. A hit is an evidence
message whose text appears verbatim in the rendered context; recall is hits / evidence per question.

**Systems.** *orchestrator*: `MemoryOrchestrator({"data_dir": <temp dir>})` with its default tiers
(embedded Redis + PostgreSQL/pgvector, offline MiniLM embedder); every turn through `store_turn` (one
`user_id` per conversation, one `session_id` per session, `created_at` = the user message's time when
`store_turn` accepts it), then `flush()`; each question asked from a
fresh session with `get_comprehensive_context(max_total_tokens=B)`, scored on `ctx.text`. Baselines over
all raw messages of the conversation, rendered `[date] User: ...` / `[date] Assistant: ...` and packed
greedily in rank order into the same budget (gpt-4o tokenizer): *recency* (newest first); *bm25* (Okapi,
k1 = 1.2, b = 0.75, stopwords removed, one message per document); *dense* (cosine with the project's
local embedder); *fused* (reciprocal-rank fusion of bm25 and dense, k = 60) and *fused-1.5* (dense side
weighted 1.5).
"""


def update_docs(path: Path, body: str) -> None:
    """Replace (or append) the ``## Recall`` section of ``path``; the rest of the file is kept as is."""
    bench_update_docs(path, body, heading=DOCS_HEADING)


# --------------------------------------------------------------------------------------------------
# command line


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conversations", type=_positive, default=None, help="number of conversations (default 4)")
    parser.add_argument("--budgets", type=_positive, nargs="+", default=[1000, 2000, 4000], help="token budgets")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="2 short conversations (under 2 minutes)")
    parser.add_argument("--config-json", default="{}", help="extra MemoryConfig keys for the orchestrator (JSON)")
    parser.add_argument("--data-dir", default=None, help="keep the embedded servers' data here (default: temp dir)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write every number to FILE")
    parser.add_argument("--write-docs", nargs="?", const=str(DEFAULT_DOCS), default=None, metavar="FILE",
                        help="replace the '## Recall' section of FILE (default docs/benchmarks.md)")
    parser.add_argument("--skip-orchestrator", action="store_true", help="baselines only (no servers)")
    parser.add_argument("--log-level", default="ERROR", help="library log level on stderr (default ERROR)")
    return parser


def _prepare(args: argparse.Namespace) -> tuple[str, bool]:
    """The data directory and whether it starts empty."""
    if args.data_dir is None:
        return tempfile.mkdtemp(prefix="mi-recall-"), True
    path = Path(args.data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return str(path), not any(path.iterdir())


async def _measure(run: Run, args: argparse.Namespace, data_dir: str, fresh: bool) -> None:
    extra = json.loads(args.config_json)
    if not isinstance(extra, dict):
        raise SystemExit("--config-json must be a JSON object")
    if not args.skip_orchestrator:
        t0 = time.perf_counter()
        await run_orchestrator(run, data_dir, extra, fresh_dir=fresh, temp_dir=args.data_dir is None)
        run.timings["orchestrator_s"] = time.perf_counter() - t0
    await run_baselines(run, get_tokenizer(TOKENIZER_MODEL), data_dir)


def reproduce(args: argparse.Namespace) -> str:
    """The command line that gives the same numbers (output-only flags left out)."""
    parts = ["python benchmarks/recall.py"]
    if args.quick:
        parts.append("--quick")
    if args.conversations:
        parts.append(f"--conversations {args.conversations}")
    if sorted(set(args.budgets)) != [1000, 2000, 4000]:
        parts.append("--budgets " + " ".join(str(b) for b in sorted(set(args.budgets))))
    if args.seed:
        parts.append(f"--seed {args.seed}")
    if json.loads(args.config_json):
        parts.append(f"--config-json {shlex.quote(args.config_json)}")
    if args.skip_orchestrator:
        parts.append("--skip-orchestrator")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run every system, print the tables (and write JSON / docs when asked)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    configure_logging(args.log_level)
    command = reproduce(args)
    sizes = Sizes.quick() if args.quick else Sizes()
    n = args.conversations or (2 if args.quick else 4)
    tokenizer = get_tokenizer(TOKENIZER_MODEL)
    started = time.perf_counter()
    convs = generate(args.seed, n, sizes)
    run = Run(convs, sorted(set(args.budgets)))
    run.timings["generate_s"] = time.perf_counter() - started
    gen = generator_stats(convs, tokenizer)

    data_dir, fresh = _prepare(args)
    try:
        asyncio.run(_measure(run, args, data_dir, fresh))
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    run.timings["total_s"] = time.perf_counter() - started

    summary = summarize(run)
    body = render(run, summary, gen, command, args.seed)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    machine = (f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
               f"{os.getloadavg()[0]:.1f} at the end")
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in run.timings.items())
    footer = f"Run {when}: {machine}; {timing}."
    print(body + "\n" + footer)
    if args.json:
        payload = {
            "command": command, "seed": args.seed, "date": when, "budgets": run.budgets, "generator": gen,
            "orchestrator": run.orchestrator, "timings": run.timings, "notes": run.notes, **summary,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    if args.write_docs:
        update_docs(Path(args.write_docs), f"{DOCS_INTRO}\n### Results ({when})\n\n{body}\n{footer}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
