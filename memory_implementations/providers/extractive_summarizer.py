"""``ExtractiveSummarizer``: offline summaries by sentence ranking (TextRank + fact, role and recency weights)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..tokens import get_tokenizer
from ..types import Message
from .text_utils import STOPWORDS, split_sentences, textrank, tfidf_matrix, words

_PREFIX = re.compile(r"^\s*(User|Assistant|System|Tool)\s*:\s*(.*)$", re.IGNORECASE)
FACT_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\bmy name(?:'s| is)\b",
        r"\bcall me\b",
        r"\bi(?:'m| am) (?:an? )?\w+(?:er|or|ist|ian|ant|ent|nurse|doctor|chef|student|engineer|teacher)\b",
        r"\bi (?:work|worked|am working|'m working) (?:as|at|for|in|on)\b",
        r"\bmy (?:job|role|title|company|employer|team)\b",
        r"\bi (?:live|lived|am living|'m living|moved|relocated|am moving|'m moving|grew up)\b",
        r"\bi(?:'m| am) (?:from|based in|originally)\b",
        r"\bi (?:really )?(?:prefer|like|love|enjoy|hate|dislike|can't stand|cannot stand)\b",
        r"\bmy (?:favou?rite|wife|husband|partner|sister|brother|mother|father|mom|mum|dad|son|daughter|kids?|"
        r"manager|boss|friend|dog|cat|birthday|email|phone|address|goal|plan)\b",
        r"\bi(?:'m| am) (?:allergic|vegetarian|vegan|married|single|pregnant|retired)\b",
        r"\bi(?:'m| am) \d+(?: years old)?\b",
        r"\bi (?:have|own) (?:a|an|two|three|\d+)\b",
        r"\bi(?:'m| am) (?:studying|learning|planning|training|preparing)\b",
        r"\b(?:remember|don't forget|deadline|appointment|due (?:on|by)|tomorrow|next week)\b",
        r"\b(?:we|i) (?:decided|agreed|will|'ll)\b",
    )
)
_FILLER = frozenset("hi hello hey there thanks thank you ok okay sure great cool bye yes no yeah yep nope lol".split())
ROLE_WEIGHT = {"user": 1.0, "assistant": 0.55, "system": 0.4, "tool": 0.3, "": 0.8}
FACT_BONUS = 1.6
REDUNDANCY = 0.8  # a candidate this similar to a chosen sentence is dropped


@dataclass
class _Unit:
    text: str
    speaker: str  # "user", "assistant", ... or "" for unattributed summary lines
    origin: int  # which message (or summary line) it came from, in chronological order
    recency: float
    from_summary: bool


def fact_count(sentence: str) -> int:
    """How many memorable-fact patterns (name, job, city, preference, plan, ...) ``sentence`` matches."""
    return sum(1 for p in FACT_PATTERNS if p.search(sentence))


class ExtractiveSummarizer:
    """Keeps the most informative sentences of the previous summary and the new messages, with speakers.

    Scores are TextRank centrality over TF-IDF similarity, boosted for first-person facts (names, jobs,
    cities, preferences, plans), weighted by role and recency; near-duplicates are dropped and the
    survivors are rendered chronologically as ``User: ...`` / ``Assistant: ...`` lines within ``max_tokens``.
    """

    name = "extractive-textrank"

    def __init__(self, *, tokenizer_model: str | None = None) -> None:
        """Count tokens with ``tokenizer_model``'s tokenizer."""
        self.tokenizer = get_tokenizer(tokenizer_model)

    async def summarize(self, previous_summary: str | None, messages: list[Message], *, max_tokens: int) -> str:
        """Return the updated summary, at most ``max_tokens`` tokens."""
        return self.summarize_sync(previous_summary, messages, max_tokens=max_tokens)

    def summarize_sync(self, previous_summary: str | None, messages: list[Message], *, max_tokens: int) -> str:
        """Blocking version of :meth:`summarize` (pure CPU, milliseconds)."""
        if max_tokens <= 0:
            return ""
        units = self._units(previous_summary, messages)
        if not units:
            return ""
        scores = self._scores(units)
        sims = tfidf_matrix([u.text for u in units])
        chosen: list[int] = []
        for idx in np.argsort(-scores, kind="stable"):
            i = int(idx)
            if scores[i] <= 0 or any(float(sims[i] @ sims[j]) >= REDUNDANCY for j in chosen):
                continue
            if self.tokenizer.count(self._render(units, [*chosen, i])) <= max_tokens:
                chosen.append(i)
        if not chosen:  # even the best sentence is too long: cut it
            best = int(np.argmax(scores))
            return self.tokenizer.truncate(self._render(units, [best]), max_tokens)
        return self._render(units, chosen)

    def _units(self, previous_summary: str | None, messages: list[Message]) -> list[_Unit]:
        units: list[_Unit] = []
        origin = 0
        for line in (previous_summary or "").splitlines():
            match = _PREFIX.match(line)
            speaker, body = (match.group(1).lower(), match.group(2)) if match else ("", line)
            for sentence in split_sentences(body):
                units.append(_Unit(sentence, speaker, origin, 0.8, True))
            origin += 1
        n = max(1, len(messages) - 1)
        for k, message in enumerate(messages):
            for sentence in split_sentences(message.content):
                units.append(_Unit(sentence, message.role, origin, 0.6 + 0.4 * k / n, False))
            origin += 1
        return units

    def _scores(self, units: list[_Unit]) -> np.ndarray:
        vectors = tfidf_matrix([u.text for u in units])
        centrality = textrank(vectors @ vectors.T) if len(units) > 1 else np.ones(1)
        scores = np.zeros(len(units))
        for i, unit in enumerate(units):
            toks = words(unit.text)
            if not toks:
                continue
            role = ROLE_WEIGHT.get(unit.speaker, 0.5)
            facts = fact_count(unit.text)
            first_person = unit.speaker in ("user", "") or unit.from_summary
            bonus = FACT_BONUS * min(facts, 2) * (1.0 if first_person else 0.3)
            score = (0.4 + 0.6 * min(float(centrality[i]), 3.0) + bonus) * role * unit.recency
            if all(t in _FILLER or t in STOPWORDS for t in toks):
                score = 0.0
            elif len(toks) < 4 and not facts:
                score *= 0.5
            if unit.text.rstrip().endswith("?") and not facts:
                score *= 0.8
            scores[i] = score
        return scores

    @staticmethod
    def _render(units: list[_Unit], chosen: list[int]) -> str:
        lines: list[str] = []
        last_origin = -1
        for i in sorted(chosen):
            unit = units[i]
            if unit.origin == last_origin and lines:
                lines[-1] += " " + unit.text
            else:
                lines.append(f"{unit.speaker.capitalize()}: {unit.text}" if unit.speaker else unit.text)
            last_origin = unit.origin
        return "\n".join(lines)


__all__ = ["FACT_PATTERNS", "ExtractiveSummarizer", "fact_count"]
