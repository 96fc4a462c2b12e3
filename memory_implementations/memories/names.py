"""Entity name normalisation and similarity, used to merge spellings of one entity.

``normalize_name`` gives the canonical key stored in ``memory_entities.normalized_name`` (and
``memory_entity_aliases.normalized_alias``): Unicode NFKD with accents removed, casefolded,
possessives and punctuation stripped, dotted acronyms joined ("I.B.M." -> "ibm"), leading titles
("Dr", "Mrs") and a leading "the", and trailing corporate suffixes ("Corp", "Inc", "Ltd") removed
when something else remains. "Acme Corp", "Acme Corporation" and "ACME" all give "acme", so they
meet on the table's unique key and merge race-free. Fuzzy matching (``same_entity``) only catches
spelling variants ("Jonathon Smith" / "Jonathan Smith"); nicknames ("Bob" / "Robert") merge only
through explicit aliases.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

TITLES = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "doctor",
        "prof",
        "professor",
        "sir",
        "dame",
        "madam",
        "rev",
        "lord",
        "lady",
    }
)
CORPORATE_SUFFIXES = frozenset(
    {
        "inc",
        "incorporated",
        "corp",
        "corporation",
        "co",
        "company",
        "ltd",
        "limited",
        "llc",
        "plc",
        "gmbh",
        "ag",
        "sa",
        "llp",
        "lp",
        "pty",
        "bv",
        "nv",
        "srl",
        "oy",
        "ab",
        "holdings",
        "group",
    }
)
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "him",
        "his",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "new",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "about",
        "tell",
        "know",
    }
)
_ACRONYM = re.compile(r"\b(?:[^\W\d_]\.){2,}")
_POSSESSIVE = re.compile(r"(?<=\w)['\u2019]s\b|(?<=s)['\u2019](?=\s|$)")
_NON_WORD = re.compile(r"[^\w\s]+|_+")
FUZZY_THRESHOLD = 0.92


def fold(text: str) -> str:
    """NFKD-decompose, drop combining marks and casefold: "Zoë" -> "zoe"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def tokens(text: str) -> list[str]:
    """Folded word tokens of ``text`` with possessives and punctuation removed."""
    folded = fold(text)
    folded = _ACRONYM.sub(lambda m: m.group(0).replace(".", ""), folded)
    folded = _POSSESSIVE.sub("", folded)
    return _NON_WORD.sub(" ", folded).split()


def normalize_tokens(parts: list[str]) -> list[str]:
    """Strip a leading "the", leading titles and trailing corporate suffixes (never down to nothing)."""
    out = list(parts)
    while len(out) > 1 and (out[0] in TITLES or out[0] == "the"):
        out.pop(0)
    while len(out) > 1 and out[-1] in CORPORATE_SUFFIXES:
        out.pop()
    return out


def normalize_name(name: str) -> str:
    """The canonical key of an entity name ("" when nothing is left)."""
    return " ".join(normalize_tokens(tokens(name)))


def jaro_winkler(a: str, b: str, *, prefix_scale: float = 0.1) -> float:
    """Jaro-Winkler similarity of two strings in [0, 1]."""
    if a == b:
        return 1.0
    la, lb = len(a), len(b)
    if not la or not lb:
        return 0.0
    window = max(0, max(la, lb) // 2 - 1)
    a_hit = [False] * la
    b_hit = [False] * lb
    matches = 0
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(lb, i + window + 1)):
            if not b_hit[j] and b[j] == ch:
                a_hit[i] = b_hit[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    a_seq = [ch for ch, hit in zip(a, a_hit, strict=True) if hit]
    b_seq = [ch for ch, hit in zip(b, b_hit, strict=True) if hit]
    transpositions = sum(x != y for x, y in zip(a_seq, b_seq, strict=True)) / 2
    jaro = (matches / la + matches / lb + (matches - transpositions) / matches) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4], strict=False):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * prefix_scale * (1 - jaro)


def token_set_ratio(a: str, b: str) -> float:
    """Token-set similarity in [0, 1]: shared tokens over the larger token set."""
    sa, sb = set(a.split()), set(b.split())
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / max(len(sa), len(sb))


def same_entity(a: str, b: str, *, threshold: float = FUZZY_THRESHOLD) -> bool:
    """Whether two normalised names are spelling variants of one name.

    Both must have the same number of tokens, each token pair must start with the same letter and be
    Jaro-Winkler-similar, and the whole must reach ``threshold``; short single words (< 5 letters)
    must match exactly, so "Ana"/"Anna" and "Bob"/"Rob" stay apart.
    """
    if a == b:
        return bool(a)
    ta, tb = a.split(), b.split()
    if not ta or len(ta) != len(tb):
        return False
    if len(ta) == 1 and min(len(a), len(b)) < 5:
        return False
    for x, y in zip(ta, tb, strict=True):
        if x == y:
            continue
        if x[0] != y[0] or min(len(x), len(y)) < 3 or jaro_winkler(x, y) < threshold - 0.04:
            return False
    return jaro_winkler(a, b) >= threshold


def query_ngrams(text: str, *, max_n: int = 4) -> list[str]:
    """Normalised word n-grams (1..max_n) of ``text`` for matching names and aliases, stopword unigrams dropped."""
    words = tokens(text)
    grams: list[str] = []
    seen: set[str] = set()
    for n in range(max_n, 0, -1):
        for i in range(len(words) - n + 1):
            window = words[i : i + n]
            if n == 1 and (window[0] in STOPWORDS or len(window[0]) < 2):
                continue
            for gram in {" ".join(window), " ".join(normalize_tokens(window))}:
                if gram and gram not in seen:
                    seen.add(gram)
                    grams.append(gram)
    return grams


def content_tokens(text: str) -> list[str]:
    """Folded tokens of ``text`` without stopwords and one-letter words."""
    return [t for t in tokens(text) if t not in STOPWORDS and len(t) > 1]


def unique(values: Iterable[str]) -> list[str]:
    """``values`` without blanks and duplicates, first occurrence kept."""
    out: list[str] = []
    for value in values:
        if value and value not in out:
            out.append(value)
    return out


__all__ = [
    "CORPORATE_SUFFIXES",
    "FUZZY_THRESHOLD",
    "STOPWORDS",
    "TITLES",
    "content_tokens",
    "fold",
    "jaro_winkler",
    "normalize_name",
    "normalize_tokens",
    "query_ngrams",
    "same_entity",
    "token_set_ratio",
    "tokens",
    "unique",
]
