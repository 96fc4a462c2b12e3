"""``LexicalHashEmbedder``: a zero-dependency lexical fallback (hashed n-grams), not a semantic model."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .embedding_dim import embedding_dim_for
from .embeddings import normalize_rows

if TYPE_CHECKING:
    from ..config import MemoryConfig

MODEL_NAME = "lexical-hash-v1"
DEFAULT_DIM = 384
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*", re.UNICODE)
_STOPWORDS = frozenset(
    "a an the and or but if of to in on at for with by from as is are was were be been being am i me my we our you "
    "your he she it its they them their this that these those do does did have has had not no so than too very can "
    "will just about into over what which who whom how".split()
)
UNIGRAM_WEIGHT, BIGRAM_WEIGHT, TRIGRAM_WEIGHT, STOPWORD_WEIGHT = 1.0, 0.7, 0.35, 0.25


@lru_cache(maxsize=65_536)
def _slot(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, (1.0 if (value >> 63) & 1 else -1.0)


def lexical_features(text: str) -> dict[str, float]:
    """Weighted features of ``text``: word unigrams, word bigrams and character trigrams of each word."""
    words = [w.lower() for w in _WORD.findall(text)]
    features: dict[str, float] = defaultdict(float)
    for word in words:
        features["w:" + word] += STOPWORD_WEIGHT if word in _STOPWORDS else UNIGRAM_WEIGHT
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            features["c:" + padded[i : i + 3]] += TRIGRAM_WEIGHT
    for left, right in itertools.pairwise(words):
        features[f"b:{left} {right}"] += BIGRAM_WEIGHT
    return dict(features)


class LexicalHashEmbedder:
    """Signed feature hashing of n-grams into ``dim`` buckets, sublinear weights, L2-normalised.

    It matches shared words and spellings, not meaning: "car" and "automobile" are unrelated to it.
    """

    provider = "lexical"
    kind = "lexical"

    def __init__(self, *, dim: int = DEFAULT_DIM, model: str = MODEL_NAME) -> None:
        """Create an embedder of ``dim`` dimensions."""
        self.dim = dim
        self.model = model

    @classmethod
    def from_config(cls, config: MemoryConfig, *, fallback: bool = False) -> LexicalHashEmbedder:
        """Build for ``config`` (``embedding_dim``, default 384); a fallback ignores ``embedding_model``."""
        model = MODEL_NAME if fallback or not config.embedding_model else config.embedding_model
        return cls(dim=embedding_dim_for(config, "lexical"), model=model)

    def embed_one(self, text: str) -> np.ndarray:
        """The (unnormalised) hashed vector of ``text``."""
        vec = np.zeros(self.dim, dtype=np.float32)
        for feature, weight in lexical_features(text).items():
            index, sign = _slot(feature, self.dim)
            vec[index] += sign * (1.0 + math.log(weight)) if weight >= 1 else sign * weight
        return vec

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (unnormalised rows)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.embed_one(t) for t in texts])

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 ``(len(texts), dim)``, rows L2-normalised (empty text gives zeros)."""
        return normalize_rows(await self.embed_batch(list(texts)))


__all__ = ["MODEL_NAME", "LexicalHashEmbedder", "lexical_features"]
