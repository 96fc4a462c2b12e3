"""Small text helpers shared by the offline summariser and extractor: sentences, words, TF-IDF."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*", re.UNICODE)
STOPWORDS = frozenset(
    "a an the and or but if of to in on at for with by from as is are was were be been being am i me my mine we us "
    "our you your yours he him his she her it its they them their this that these those do does did doing have has "
    "had having not no nor so than too very can could will would shall should may might must just about into over "
    "under again further then once here there when where why how all any both each few more most other some such "
    "only own same what which who whom whose up down out off also yes ok okay oh well really im i'm it's that's".split()
)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split at . ! ? before a capital or digit, and at newlines)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Lower-cased words without stopwords."""
    return [w for w in words(text) if w not in STOPWORDS]


def tfidf_matrix(docs: Sequence[str]) -> np.ndarray:
    """Row-normalised TF-IDF vectors (sublinear tf, smoothed idf) of ``docs`` over their content words."""
    tokenised = [content_words(d) for d in docs]
    vocab: dict[str, int] = {}
    for toks in tokenised:
        for tok in toks:
            vocab.setdefault(tok, len(vocab))
    matrix = np.zeros((len(docs), max(1, len(vocab))), dtype=np.float64)
    df: Counter[str] = Counter(tok for toks in tokenised for tok in set(toks))
    n = len(docs)
    for row, toks in enumerate(tokenised):
        for tok, count in Counter(toks).items():
            matrix[row, vocab[tok]] = (1.0 + math.log(count)) * (math.log((1 + n) / (1 + df[tok])) + 1.0)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def textrank(similarity: np.ndarray, *, damping: float = 0.85, iterations: int = 50) -> np.ndarray:
    """PageRank over a weighted similarity graph; scores average 1.0."""
    n = similarity.shape[0]
    if n == 0:
        return np.zeros(0)
    weights = similarity.copy()
    np.fill_diagonal(weights, 0.0)
    out_sum = weights.sum(axis=1, keepdims=True)
    transition = np.divide(weights, out_sum, out=np.full_like(weights, 1.0 / n), where=out_sum > 0)
    scores = np.full(n, 1.0 / n)
    for _ in range(iterations):
        updated = (1 - damping) / n + damping * transition.T @ scores
        if np.abs(updated - scores).sum() < 1e-9:
            scores = updated
            break
        scores = updated
    return scores * n


__all__ = ["STOPWORDS", "content_words", "split_sentences", "textrank", "tfidf_matrix", "words"]
