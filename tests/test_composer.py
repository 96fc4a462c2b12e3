"""The composer: budget split, reflow, per-item truncation, dedupe, renderings — and the budget property."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_implementations.composer import (
    BULLET,
    CONVERSATION,
    MIN_TRUNCATED_TOKENS,
    PREAMBLE,
    ROLE_LABELS,
    SECTION_ORDER,
    SECTION_TITLES,
    TRUNCATION_SLACK,
    TokenCounter,
    compose,
    near_duplicate,
    normalize_content,
    resolve_weights,
    water_fill,
)
from memory_implementations.config import DEFAULT_PRIORITY
from memory_implementations.errors import ValidationError
from memory_implementations.tokens import Tokenizer, get_tokenizer

TOK = get_tokenizer("gpt-4o")


def chars4_tokenizer() -> Tokenizer:
    """A tokenizer forced onto the ~4 chars/token fallback."""
    t = Tokenizer("gpt-4o")
    t._enc = None
    t.method = "chars/4"
    return t


CHARS4 = chars4_tokenizer()


def counts_ok(ctx: Any, tok: Tokenizer, budget: int) -> None:
    """Every rendering, counted independently with the tokenizer, is within the budget and matches ctx."""
    a = ctx.anthropic()
    n_messages = tok.count_messages(ctx.messages)
    n_anthropic = tok.count(a["system"]) + tok.count_messages(a["messages"])
    n_text = tok.count(ctx.text)
    assert n_messages <= budget
    assert n_anthropic <= budget
    assert n_text <= budget
    assert ctx.token_counts == {"messages": n_messages, "anthropic": n_anthropic, "text": n_text}
    assert ctx.total_tokens == max(n_messages, n_anthropic, n_text)


def sentence(i: int, words: int = 12) -> str:
    return " ".join(f"word{i}x{j}" for j in range(words))


# --- water-filling and weights -----------------------------------------------------------------


def test_water_fill_reflows_unused_share_by_weight() -> None:
    caps = water_fill({"a": 10, "b": 1000, "c": 1000}, {"a": 0.5, "b": 0.25, "c": 0.25}, 400)
    assert caps["a"] == 10
    # a's unused 190 flows to b and c equally (equal weights)
    assert caps["b"] == pytest.approx(195)
    assert caps["c"] == pytest.approx(195)
    assert sum(caps.values()) == pytest.approx(400)


def test_water_fill_proportional_by_weight_and_zero_weight_gets_nothing() -> None:
    caps = water_fill({"a": 0, "b": 1000, "c": 1000, "z": 1000}, {"a": 0.5, "b": 0.3, "c": 0.1, "z": 0.0}, 400)
    assert caps["a"] == 0 and caps["z"] == 0
    assert caps["b"] == pytest.approx(300)
    assert caps["c"] == pytest.approx(100)


def test_resolve_weights_defaults_overrides_and_validation() -> None:
    w = resolve_weights({"recent_conversation": 0.4, "summary": 0.2}, {"key_value": 0.5})
    assert w["recent_conversation"] == 0.4
    assert w["entities"] == DEFAULT_PRIORITY["entities"]  # missing key keeps its default
    assert w["key_value"] == 0.5
    with pytest.raises(ValidationError) as err:
        resolve_weights(None, {"vectors": 0.3})
    assert err.value.field == "weights"
    with pytest.raises(ValidationError):
        resolve_weights(None, {"summary": -1})


def test_compose_rejects_bad_budget() -> None:
    with pytest.raises(ValidationError):
        compose({}, max_total_tokens=0, counter=TOK)


# --- allocation behaviour ------------------------------------------------------------------------


def test_sections_of_disabled_tiers_get_no_share_and_budget_reflows() -> None:
    items: dict[str, list[dict[str, Any]]] = {
        "vector_search": [{"content": sentence(i), "score": 1 - i / 100} for i in range(60)],
        "key_value": [{"content": "city: Dallas"}],
    }
    only = compose(items, max_total_tokens=600, counter=TOK, sections=["vector_search", "key_value"])
    assert set(only.sections) == {"key_value", "vector_search"}
    kv, vec = only.sections["key_value"], only.sections["vector_search"]
    assert kv.tokens == kv.demand  # small demand fully served
    # vector gets nearly everything (its share plus kv's unused share), minus one item's granularity
    assert vec.tokens >= 600 - only.overhead_tokens - kv.tokens - vec.granularity
    assert vec.share < vec.tokens
    counts_ok(only, TOK, 600)


def test_reflow_gives_unused_budget_to_sections_with_more_content() -> None:
    items: dict[str, list[dict[str, Any]]] = {
        "summary": [{"content": "short summary"}],
        "vector_search": [{"content": sentence(i), "score": 1 - i / 100} for i in range(40)],
        "entities": [{"content": sentence(100 + i), "score": 1 - i / 100} for i in range(40)],
    }
    weights = {"summary": 0.5, "vector_search": 0.25, "entities": 0.25}
    ctx = compose(items, max_total_tokens=800, counter=TOK, weights=weights, sections=list(items))
    s, v, e = (ctx.sections[n] for n in ("summary", "vector_search", "entities"))
    assert s.tokens == s.demand
    # the summary's unused half went to the two others, equally (equal weights), up to item granularity
    assert v.tokens > v.share and e.tokens > e.share
    assert abs(v.tokens - e.tokens) <= max(v.granularity, e.granularity) + 1
    counts_ok(ctx, TOK, 800)


def test_truncation_drops_lowest_score_items_first_and_never_splits() -> None:
    contents = [sentence(i) for i in range(20)]
    scores = [0.5, 0.9, 0.1, 0.7, 0.3, 0.95, 0.2, 0.6, 0.8, 0.4, 0.05, 0.65, 0.15, 0.85, 0.25, 0.75, 0.35, 0.55,
              0.45, 0.99]
    items = {"vector_search": [{"content": c, "score": s, "id": str(i)} for i, (c, s) in enumerate(zip(contents,
                                                                                                   scores))]}
    ctx = compose(items, max_total_tokens=250, counter=TOK, sections=["vector_search"])
    sec = ctx.sections["vector_search"]
    kept = {i["id"] for i in sec.items}
    assert 0 < len(kept) < 20
    kept_scores = [scores[int(k)] for k in kept]
    dropped_scores = [s for i, s in enumerate(scores) if str(i) not in kept]
    assert min(kept_scores) > max(dropped_scores)
    assert all(i["content"] in contents for i in sec.items)  # whole items only
    assert not sec.truncated
    # rendered in the tier's order (relevance order as given), not by score
    assert [int(i["id"]) for i in sec.items] == sorted(int(k) for k in kept)
    counts_ok(ctx, TOK, 250)


def test_single_item_bigger_than_its_section_is_truncated_not_dropped() -> None:
    long_summary = " ".join(f"The user discussed topic number {i} at length." for i in range(200))
    items: dict[str, list[dict[str, Any]]] = {
        "summary": [{"content": long_summary}],
        CONVERSATION: [{"role": "user", "content": sentence(i, 5)} for i in range(30)],
    }
    ctx = compose(items, max_total_tokens=400, counter=TOK, sections=list(items))
    summ = ctx.sections["summary"]
    assert summ.truncated and len(summ.items) == 1
    assert summ.items[0]["content"].endswith("…")
    assert long_summary.startswith(summ.items[0]["content"][:-1])
    assert summ.tokens >= min(summ.demand, summ.share) - summ.granularity
    assert summ.granularity == TRUNCATION_SLACK + 1
    counts_ok(ctx, TOK, 400)


def test_conversation_keeps_newest_messages_in_chronological_order() -> None:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} " * 5} for i in range(40)]
    ctx = compose({CONVERSATION: msgs}, max_total_tokens=200, counter=TOK)
    conv = ctx.sections[CONVERSATION]
    kept = [m["content"] for m in conv.items]
    assert kept == [m["content"].strip() for m in msgs[len(msgs) - len(kept):]]
    assert [m["content"] for m in ctx.messages] == kept  # no memory sections: no system message
    counts_ok(ctx, TOK, 200)


def test_budget_too_small_for_anything_renders_nothing() -> None:
    ctx = compose({"summary": [{"content": "a summary of things"}]}, max_total_tokens=5, counter=TOK)
    assert ctx.messages == [] and ctx.text == "" and ctx.total_tokens == 0


# --- dedupe --------------------------------------------------------------------------------------


def test_same_fact_from_two_sections_appears_once_in_the_higher_priority_one() -> None:
    items: dict[str, list[dict[str, Any]]] = {
        CONVERSATION: [{"role": "user", "content": "I just moved to Dallas, Texas!"}],
        "vector_search": [
            {"content": "i just moved to dallas texas", "score": 0.9},  # same fact, other case/punctuation
            {"content": "User lives in Dallas", "score": 0.8},
        ],
        "key_value": [{"content": "city: Dallas"}],
    }
    ctx = compose(items, max_total_tokens=1000, counter=TOK, sections=list(items))
    assert ctx.sections["vector_search"].contents == ["User lives in Dallas"]
    assert ctx.sections["vector_search"].deduplicated == 1
    assert ctx.sections[CONVERSATION].contents == ["I just moved to Dallas, Texas!"]
    assert ctx.sections["key_value"].contents == ["city: Dallas"]  # different fact: kept
    assert ctx.text.count("moved to Dallas") == 1


def test_near_duplicates_are_deduped_but_similar_short_facts_are_not() -> None:
    long_a = "the user prefers window seats on long flights and always books aisle for short hops"
    long_b = long_a + " too"
    items: dict[str, list[dict[str, Any]]] = {
        "summary": [{"content": long_a}],
        "vector_search": [{"content": long_b}, {"content": "User likes tea"}],
        "key_value": [{"content": "User likes coffee"}],
    }
    ctx = compose(items, max_total_tokens=1000, counter=TOK, sections=list(items))
    assert ctx.sections["vector_search"].contents == ["User likes tea"]
    assert ctx.sections["key_value"].contents == ["User likes coffee"]
    # the higher-weight section wins: with vector weighted above summary, the vector copy stays
    flipped = compose(items, max_total_tokens=1000, counter=TOK, sections=list(items),
                      weights={"summary": 0.1, "vector_search": 0.5})
    assert flipped.sections["summary"].contents == []
    assert long_b in flipped.sections["vector_search"].contents


def test_repeated_message_inside_the_conversation_is_kept() -> None:
    msgs = [{"role": "user", "content": "yes"}, {"role": "assistant", "content": "ok?"},
            {"role": "user", "content": "yes"}]
    ctx = compose({CONVERSATION: msgs}, max_total_tokens=500, counter=TOK)
    assert [m["content"] for m in ctx.messages] == ["yes", "ok?", "yes"]


def test_normalize_content() -> None:
    assert normalize_content("  Zoë's   CAFÉ, Dallas! ") == "zoe s cafe dallas"


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_normalize_content_fast_path_matches_the_full_normalisation(text: str) -> None:
    """The memoised ASCII fast path gives exactly what NFKD + combining-mark removal + casefold gives."""
    import re
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    expected = " ".join(re.sub(r"[\W_]+", " ", folded).split())
    assert normalize_content(text) == expected
    assert normalize_content(text) == expected  # cached


def test_near_duplicate_size_bound_is_exact() -> None:
    """Sets whose sizes alone rule out Jaccard >= 0.85 are rejected; 17 of 20 shared words is exactly 0.85."""
    a = frozenset(f"w{i}" for i in range(20))
    assert near_duplicate(a, frozenset(f"w{i}" for i in range(17)))
    assert not near_duplicate(a, frozenset(f"w{i}" for i in range(16)))


# --- renderings ----------------------------------------------------------------------------------


def full_items() -> dict[str, list[dict[str, Any]]]:
    return {
        "summary": [{"content": "Earlier the user planned a trip to Japan."}],
        "entities": [{"content": "Ana (person): job=nurse; city=Dallas", "score": 1.0}],
        "key_value": [{"content": "diet: vegetarian"}],
        "working_memory": [
            {"content": "[plan] book hotel", "kind": "reasoning_step", "step": 2, "score": 0.9},
            {"content": "[plan] compare rail passes", "kind": "reasoning_step", "step": 1, "score": 0.8},
            {"content": "budget: 3000 USD", "kind": "item", "score": 0.7},
        ],
        "vector_search": [{"content": "User is allergic to peanuts", "score": 0.7}],
        CONVERSATION: [
            {"role": "assistant", "content": "Welcome back!"},
            {"role": "user", "content": "Which rail pass should I buy?"},
            {"role": "assistant", "content": "The 7-day JR pass fits your plan."},
        ],
    }


@pytest.mark.parametrize("tok", [TOK, CHARS4], ids=["tiktoken", "chars4"])
def test_renderings_are_complete_ordered_and_within_budget(tok: Tokenizer) -> None:
    ctx = compose(full_items(), max_total_tokens=2000, counter=tok)
    assert list(ctx.sections) == list(SECTION_ORDER)
    assert ctx.messages[0]["role"] == "system" and ctx.messages[0]["content"].startswith(PREAMBLE)
    assert [m["role"] for m in ctx.messages[1:]] == ["assistant", "user", "assistant"]
    # sections appear in the documented order in the system text and the text block
    positions = [ctx.text.index(f"## {SECTION_TITLES[s]}") for s in SECTION_ORDER]
    assert positions == sorted(positions)
    assert "User: Which rail pass should I buy?" in ctx.text
    # reasoning steps follow the facts, in step order
    wm = ctx.sections["working_memory"].contents
    assert wm == ["budget: 3000 USD", "[plan] compare rail passes", "[plan] book hotel"]
    # anthropic: first message is the user's; the leading assistant message moved into the system text
    a = ctx.anthropic()
    assert a["messages"][0] == {"role": "user", "content": "Which rail pass should I buy?"}
    assert "Assistant: Welcome back!" in a["system"]
    assert all(m["role"] in ("user", "assistant") for m in a["messages"])
    counts_ok(ctx, tok, 2000)
    assert ctx.tokenizer_method == tok.method


@pytest.mark.parametrize("budget", [40, 60, 90, 130, 200, 300])
def test_renderings_fit_tight_budgets(budget: int) -> None:
    ctx = compose(full_items(), max_total_tokens=budget, counter=TOK)
    counts_ok(ctx, TOK, budget)


def test_context_is_readable_as_a_dict_and_json_ready() -> None:
    items = full_items()
    items["vector_search"][0]["created_at"] = __import__("datetime").datetime(2025, 1, 2)
    ctx = compose(items, max_total_tokens=2000, counter=TOK)
    d = ctx.to_dict()
    json.dumps(d)
    assert ctx["sections"]["summary"]["items"][0]["content"].startswith("Earlier")
    assert d["budgets"] == {n: s.budget for n, s in ctx.sections.items()}
    assert d["section_tokens"]["summary"] == ctx.sections["summary"].tokens
    assert d["anthropic"] == ctx.anthropic()
    assert d["token_counts"]["messages"] == TOK.count_messages(ctx.messages)
    assert ctx.sections["summary"]["tokens"] == ctx.sections["summary"].tokens
    assert ctx.conversation == ctx.messages[1:]


def test_token_counter_caches_and_item_token_hints_are_used() -> None:
    counter = TokenCounter(TOK)
    items = {CONVERSATION: [{"role": "user", "content": f"hello there number {i}"} for i in range(10)]}
    compose(items, max_total_tokens=500, counter=counter)
    misses = counter.misses
    compose(items, max_total_tokens=500, counter=counter)
    assert counter.misses == misses  # second turn: every count came from the cache
    assert counter.hits > 0
    hinted = {"vector_search": [{"content": "short", "tokens": 300}]}
    ctx = compose(hinted, max_total_tokens=200, counter=TOK, trust_item_tokens=True)
    assert ctx.sections["vector_search"].demand > 300  # the hint, not the real count (1), was used
    ignored = compose(hinted, max_total_tokens=200, counter=TOK)
    assert ignored.sections["vector_search"].contents == ["short"]


# --- the property --------------------------------------------------------------------------------

WORDS = st.sampled_from(
    ["the", "user", "likes", "Dallas", "café", "naïve", "東京", "emoji🙂", "price:", "$3,000", "—", "rail",
     "pass", "\n", "  ", "x" * 30, "ab1", "!!", "über", "'s"]
)
TEXT = st.one_of(
    st.lists(WORDS, min_size=1, max_size=60).map(" ".join),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=200),
)
ITEM = st.fixed_dictionaries(
    {"content": TEXT, "score": st.floats(0, 1)},
    optional={"role": st.sampled_from(["user", "assistant", "system", "tool"])},
)
SECTIONS = st.dictionaries(st.sampled_from(SECTION_ORDER), st.lists(ITEM, max_size=12), min_size=1)
WEIGHTS = st.dictionaries(st.sampled_from(SECTION_ORDER), st.floats(0, 1), max_size=6)


def line_overhead(section: str, role: str | None, tok: Tokenizer) -> int:
    """Independent re-statement of the composer's per-line framing cost."""
    if section == CONVERSATION:
        return max(4, tok.count(f"{ROLE_LABELS.get(role or 'user', 'User')}: ") + 1)
    if section == "summary":
        return 1
    return tok.count(BULLET) + 1


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sections=SECTIONS, weights=WEIGHTS, budget=st.integers(1, 2500), chars4=st.booleans())
def test_property_budget_never_exceeded_and_each_section_gets_its_share(
    sections: dict[str, list[dict[str, Any]]], weights: dict[str, float], budget: int, chars4: bool
) -> None:
    tok = CHARS4 if chars4 else TOK
    ctx = compose(sections, max_total_tokens=budget, counter=tok, weights=weights, dedupe_items=False)
    # 1. every rendering, counted by the tokenizer, is within max_total_tokens
    counts_ok(ctx, tok, budget)
    w = resolve_weights(weights)
    enabled = [s for s in SECTION_ORDER if s in sections]
    assert list(ctx.sections) == enabled
    available = max(0, budget - ctx.overhead_tokens)
    total_w = sum(w[s] for s in enabled)
    accounted = 0
    for name in enabled:
        sec = ctx.sections[name]
        cands = [(i, it) for i, it in enumerate(sections[name]) if str(it["content"]).strip()]
        role = {i: (str(it.get("role") or "user") if name == CONVERSATION else None) for i, it in cands}
        cost = {i: tok.count(str(it["content"]).strip()) + line_overhead(name, role[i], tok) for i, it in cands}
        header = tok.count(f"## {SECTION_TITLES[name]}") + 2
        demand = header + sum(cost.values()) if cands else 0
        share = available * w[name] / total_w if total_w > 0 else 0.0
        # the accounting the composer reports is the one restated here
        assert sec.demand == demand
        assert sec.share == pytest.approx(share)
        accounted += sec.tokens
        if w[name] == 0:
            assert sec.items == []
            continue
        # 2. keep order: the kept items are the best-scored prefix (unless the section's one item was cut)
        n = len(sec.items)
        keep_order = sorted(cands, key=lambda p: (-(p[1]["score"]), p[0]))
        if not sec.truncated and ctx.trimmed_after_render == 0:
            assert sorted(i["content"] for i in sec.items) == sorted(
                str(it["content"]).strip() for _, it in keep_order[:n]
            )
        # 3. the share guarantee, with the granularity restated independently
        if sec.truncated:
            g = TRUNCATION_SLACK + 1
        elif n == len(cands):
            g = 0
        elif n == 0:
            top = keep_order[0][0]
            g = max(cost[top] + header, header + line_overhead(name, role[top], tok) + MIN_TRUNCATED_TOKENS) + 1
        else:
            g = cost[keep_order[n][0]] + 1
        assert sec.granularity == g
        assert sec.tokens >= min(demand, share) - g, (name, sec.to_dict())
    # the sections' accounted cost plus the reserved framing never exceeds the budget
    if ctx.trimmed_after_render == 0:
        assert accounted + ctx.overhead_tokens <= max(budget, ctx.overhead_tokens)


@settings(max_examples=100, deadline=None)
@given(sections=SECTIONS, weights=WEIGHTS, budget=st.integers(1, 1500))
def test_property_with_dedupe_renderings_stay_within_budget(
    sections: dict[str, list[dict[str, Any]]], weights: dict[str, float], budget: int
) -> None:
    ctx = compose(sections, max_total_tokens=budget, counter=TOK, weights=weights)
    counts_ok(ctx, TOK, budget)
    seen: dict[str, str] = {}
    for name, sec in ctx.sections.items():
        for content in sec.contents:
            norm = normalize_content(content)
            if norm in seen and not any(i.get("truncated") for i in sec.items):
                assert seen[norm] == name  # only repeats inside one section survive dedupe
            seen.setdefault(norm, name)


@settings(max_examples=300, deadline=None)
@given(
    demands=st.dictionaries(st.sampled_from(SECTION_ORDER), st.integers(0, 5000), min_size=1),
    weights=st.dictionaries(st.sampled_from(SECTION_ORDER), st.floats(0, 1)),
    available=st.integers(0, 5000),
)
def test_property_water_fill(demands: dict[str, int], weights: dict[str, float], available: int) -> None:
    caps = water_fill(demands, weights, available)
    total_w = sum(weights.get(s, 0.0) for s in demands)
    assert sum(caps.values()) <= available + 1e-6  # never hands out more than there is
    for s, demand in demands.items():
        assert 0 <= caps[s] <= demand + 1e-9  # never more than a section can use
        if weights.get(s, 0.0) == 0:
            assert caps[s] == 0
        else:
            share = available * weights[s] / total_w
            assert caps[s] >= min(demand, share) - 1e-6  # reflow only adds
    # nothing is left idle while a weighted section still wants more
    if any(caps[s] < demands[s] - 1e-6 for s in demands if weights.get(s, 0.0) > 0):
        assert sum(caps.values()) == pytest.approx(available, abs=1e-6)
