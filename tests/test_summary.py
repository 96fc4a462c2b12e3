"""ConversationSummaryMemory on real Redis + PostgreSQL: progressive summaries, budgets, failures, locking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from memory_implementations.errors import ValidationError
from memory_implementations.memories.summary import ConversationSummaryMemory
from memory_implementations.providers.offline import ExtractiveSummarizer
from memory_implementations.stores import Stores
from memory_implementations.types import MemoryType, Message

WINDOW = 10
BATCH = 4


class RecordingSummarizer:
    """The offline extractive summariser, recording what each call was given."""

    def __init__(self, delay: float = 0.0) -> None:
        self.name = "recording-extractive"
        self.inner = ExtractiveSummarizer()
        self.calls: list[tuple[str | None, list[int]]] = []
        self.delay = delay
        self.active = 0
        self.max_active = 0

    async def summarize(self, previous_summary: str | None, messages: list[Message], *, max_tokens: int) -> str:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)  # widen the window in which a second worker could overlap
            self.calls.append((previous_summary, [int(m.id or 0) for m in messages]))
            return await self.inner.summarize(previous_summary, messages, max_tokens=max_tokens)
        finally:
            self.active -= 1


class FailingSummarizer:
    """A model that is down."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    async def summarize(self, previous_summary: str | None, messages: list[Message], *, max_tokens: int) -> str:
        self.calls += 1
        raise RuntimeError("summariser unavailable")


class FixedSummarizer:
    """Always answers with the same text."""

    name = "fixed"

    def __init__(self, text: str) -> None:
        self.text = text

    async def summarize(self, previous_summary: str | None, messages: list[Message], *, max_tokens: int) -> str:
        return self.text


def _cfg(base_config: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {**base_config, "buffer_window_size": WINDOW, "summary_context_weight": 0.3, "max_total_tokens": 600, **over}


def _turn(i: int) -> dict[str, str]:
    if i % 2 == 0:
        return {
            "role": "user",
            "content": f"Message {i}: my project code name number {i} is Falcon-{i * 7} and it ships soon.",
        }
    return {"role": "assistant", "content": f"Noted (reply {i}): Falcon-{(i - 1) * 7} ships soon; anything else?"}


async def _rows(stores: Stores, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with stores.pg.connection() as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


@pytest.fixture
async def recorder() -> RecordingSummarizer:
    return RecordingSummarizer()


@pytest.fixture
async def memory(
    base_config: dict[str, Any], stores: Stores, recorder: RecordingSummarizer
) -> AsyncIterator[ConversationSummaryMemory]:
    m = ConversationSummaryMemory(_cfg(base_config), stores=stores, summarizer=recorder, batch_size=BATCH)
    await m.initialize()
    yield m


# --- the seed's basic usage --------------------------------------------------------------------------------
async def test_seed_basic_usage(base_config: dict[str, Any], stores: Stores, sid: str, uid: str) -> None:
    memory = ConversationSummaryMemory(base_config, stores=stores)
    await memory.initialize()
    ref = await memory.store(
        {
            "session_id": sid,
            "user_id": uid,
            "role": "user",
            "content": "Hello, I need help with Python async programming",
        }
    )
    assert ref.memory_type is MemoryType.CONVERSATION_SUMMARY and ref.durable
    context = await memory.get_context({"session_id": sid, "user_id": uid})
    assert context.get("summary", "") == ""
    assert [m["content"] for m in context.get("messages", [])] == ["Hello, I need help with Python async programming"]
    assert [(i["section"], i["role"]) for i in context.items] == [("recent_conversation", "user")]
    assert context.memory_type is MemoryType.CONVERSATION_SUMMARY
    # the default summariser is the offline extractive one (no model key configured)
    assert memory.summarizer.name == "extractive-textrank"
    health = await memory.health_check()
    assert health["status"] == "healthy" and health["details"]["buffer_window_size"] == 10


# --- 200 turns -----------------------------------------------------------------------------------------------
async def test_200_turns_progressive_summary_loses_nothing_and_fits_budget(
    memory: ConversationSummaryMemory, recorder: RecordingSummarizer, stores: Stores, sid: str, uid: str
) -> None:
    for i in range(0, 200, 2):
        await memory.store_many(
            [{**_turn(i), "session_id": sid, "user_id": uid}, {**_turn(i + 1), "session_id": sid, "user_id": uid}]
        )
    await memory.flush()

    ids = [
        r[0]
        for r in await _rows(
            stores, "SELECT id FROM memory_messages WHERE user_id = %s AND session_id = %s ORDER BY id", uid, sid
        )
    ]
    assert len(ids) == 200 and ids[-1] - ids[0] == 199  # nothing lost, contiguous

    history = await memory.get_summary_history(sid, uid)
    assert len(history) >= 2
    assert [h["version"] for h in history] == list(range(1, len(history) + 1))
    covers = [h["covers_to_id"] for h in history]
    assert covers == sorted(set(covers))  # strictly increasing
    assert all(h["covers_from_id"] == ids[0] for h in history)
    assert [h["message_count"] for h in history] == [ids.index(c) + 1 for c in covers]
    assert all(h["model"] == "recording-extractive" for h in history)
    assert all(h["token_count"] <= memory.summary_budget for h in history)

    # every summariser call got the previous version and exactly the next unsummarised messages
    assert len(recorder.calls) == len(history)
    folded: list[int] = []
    for n, (previous, batch) in enumerate(recorder.calls):
        assert previous == (history[n - 1]["summary"] if n else None)
        folded.extend(batch)
    assert folded == ids[: ids.index(covers[-1]) + 1]
    # the tail left unsummarised is the window plus less than one batch
    uncovered = [i for i in ids if i > covers[-1]]
    assert WINDOW <= len(uncovered) < WINDOW + BATCH

    latest = await memory.get_summary(sid, uid)
    assert latest is not None and latest["version"] == history[-1]["version"]

    budget = 600
    ctx = await memory.get_context({"session_id": sid, "user_id": uid})
    tok = memory.tokenizer
    assert tok.count(ctx.text) <= budget and ctx.token_count <= budget
    assert sum(i["token_count"] for i in ctx.items) <= budget
    sections = [i["section"] for i in ctx.items]
    assert sections[0] == "summary" and set(sections[1:]) == {"recent_conversation"}
    assert ctx.get("summary") == latest["summary"]
    msg_ids = [int(i["id"]) for i in ctx.items[1:]]
    assert msg_ids == uncovered[-len(msg_ids) :] and msg_ids[-1] == ids[-1]
    assert [m["content"] for m in ctx.get("messages")] == [i["content"] for i in ctx.items[1:]]

    small = await memory.get_context({"session_id": sid, "user_id": uid}, max_tokens=150)
    assert tok.count(small.text) <= 150
    share = int(150 * 0.3)
    summary_items = [i for i in small.items if i["section"] == "summary"]
    assert small.truncated and summary_items and len(small.items) > 1
    assert summary_items[0]["token_count"] <= share  # messages wanted more than their share: summary kept to its own
    assert int(small.items[-1]["id"]) == ids[-1]


async def test_budget_reflows_between_summary_and_messages(
    base_config: dict[str, Any], stores: Stores, sid: str, uid: str
) -> None:
    long_summary = " ".join(f"Fact {i}: the user likes item {i}." for i in range(60))
    memory = ConversationSummaryMemory(
        _cfg(base_config), stores=stores, summarizer=FixedSummarizer(long_summary), batch_size=BATCH
    )
    await memory.initialize()
    await memory.store_many(
        [{"session_id": sid, "user_id": uid, "role": "user", "content": f"ok {i}"} for i in range(WINDOW + 2)]
    )
    await memory.summarize_now(sid, uid)
    tok = memory.tokenizer

    # few, short messages: the summary may use the share the messages left unused
    ctx = await memory.get_context({"session_id": sid, "user_id": uid}, max_tokens=300)
    summary_tokens = ctx.items[0]["token_count"]
    assert ctx.items[0]["section"] == "summary"
    assert len(ctx.items) == 1 + WINDOW  # every window message fits
    assert summary_tokens > int(300 * 0.3)
    assert tok.count(ctx.text) <= 300

    # no summary content at all: messages get the whole budget (a summariser that never produces one:
    # with the fixed one, a background summary could land before the read, depending on the machine)
    unsummarised = ConversationSummaryMemory(
        _cfg(base_config), stores=stores, summarizer=FailingSummarizer(), batch_size=BATCH
    )
    await unsummarised.initialize()
    other = sid + "-nosummary"
    await unsummarised.store_many(
        [{"session_id": other, "user_id": uid, "role": "user", "content": f"word {i} " * 20} for i in range(30)]
    )
    ctx2 = await unsummarised.get_context({"session_id": other, "user_id": uid}, max_tokens=400)
    assert ctx2.get("summary") == "" and tok.count(ctx2.text) <= 400
    assert tok.count(ctx2.text) > 400 - 60  # within one message of the full budget


# --- failures --------------------------------------------------------------------------------------------------
async def test_failed_summarisation_keeps_previous_summary_and_falls_back_to_raw_turns(
    base_config: dict[str, Any], memory: ConversationSummaryMemory, stores: Stores, sid: str, uid: str
) -> None:
    await memory.store_many([{**_turn(i), "session_id": sid, "user_id": uid} for i in range(20)])
    await memory.summarize_now(sid, uid)
    before = await memory.get_summary_history(sid, uid)
    assert before and before[-1]["message_count"] == 20 - WINDOW

    failing = FailingSummarizer()
    broken = ConversationSummaryMemory(_cfg(base_config), stores=stores, summarizer=failing, batch_size=BATCH)
    await broken.initialize()
    failures_before = stores.worker.stats.failures_by_name.get("summarize", 0)
    for i in range(20, 40):
        await broken.store({**_turn(i), "session_id": sid, "user_id": uid})
    await broken.flush()

    assert failing.calls >= 2  # retried by the worker and re-triggered by later stores
    assert stores.worker.stats.failures_by_name.get("summarize", 0) > failures_before
    assert await broken.get_summary_history(sid, uid) == before  # previous summary untouched
    ctx = await broken.get_context({"session_id": sid, "user_id": uid}, max_tokens=2000)
    assert ctx.get("summary") == before[-1]["summary"]
    msgs = [i for i in ctx.items if i["section"] == "recent_conversation"]
    assert len(msgs) == 30  # everything after the summary's coverage, not just the 10-message window
    assert all(int(m["id"]) > before[-1]["covers_to_id"] for m in msgs)
    assert ctx.get("unsummarized_older_messages") == 20
    health = await broken.health_check()
    assert health["details"]["failed_summary_jobs"] > 0

    # the model is back: the next store re-triggers and catches up
    await memory.store({**_turn(40), "session_id": sid, "user_id": uid})
    await memory.flush()
    after = await memory.get_summary_history(sid, uid)
    assert after[: len(before)] == before and len(after) > len(before)
    ctx = await memory.get_context({"session_id": sid, "user_id": uid}, max_tokens=2000)
    assert WINDOW <= len([i for i in ctx.items if i["section"] == "recent_conversation"]) < WINDOW + BATCH


# --- concurrency -------------------------------------------------------------------------------------------------
async def test_one_summariser_per_session_at_a_time(
    base_config: dict[str, Any], stores: Stores, sid: str, uid: str
) -> None:
    slow = RecordingSummarizer(delay=0.05)
    a = ConversationSummaryMemory(
        _cfg(base_config), stores=stores, summarizer=slow, batch_size=BATCH, max_batch_messages=BATCH
    )
    b = ConversationSummaryMemory(
        _cfg(base_config), stores=stores, summarizer=slow, batch_size=BATCH, max_batch_messages=BATCH
    )
    await a.initialize()
    await b.initialize()
    await a.store_many([{**_turn(i), "session_id": sid, "user_id": uid} for i in range(WINDOW + 5 * BATCH)])
    await asyncio.gather(a.summarize_now(sid, uid), b.summarize_now(sid, uid), a.summarize_now(sid, uid))
    await a.flush()
    assert slow.max_active == 1
    history = await a.get_summary_history(sid, uid)
    assert [h["version"] for h in history] == list(range(1, len(history) + 1))
    batches = [batch for _, batch in slow.calls]
    flat = [i for batch in batches for i in batch]
    assert len(flat) == len(set(flat)) == 5 * BATCH  # no message summarised twice, none skipped
    latest = await a.get_summary(sid, uid)
    assert latest is not None and latest["message_count"] == 5 * BATCH

    # background jobs from two instances racing on one session: one runs, the other leaves a re-run flag
    n0 = WINDOW + 5 * BATCH
    await asyncio.gather(
        *((a if i % 2 else b).store({**_turn(i), "session_id": sid, "user_id": uid}) for i in range(n0, n0 + 6 * BATCH))
    )
    await a.flush()
    assert slow.max_active == 1
    flat = [i for _, batch in slow.calls for i in batch]
    assert len(flat) == len(set(flat))
    history = await a.get_summary_history(sid, uid)
    assert [h["version"] for h in history] == list(range(1, len(history) + 1))
    ids = [m.id for m in await a.get_messages(sid, uid)]
    assert sorted(flat) == ids[: len(flat)]  # a gap-free prefix of the session
    assert len(ids) - len(flat) < WINDOW + BATCH  # the holder re-ran for the work it was flagged


# --- cache, isolation, clear, validation -------------------------------------------------------------------------
async def test_latest_summary_cache_with_postgres_fallback(
    memory: ConversationSummaryMemory, stores: Stores, sid: str, uid: str
) -> None:
    await memory.store_many([{**_turn(i), "session_id": sid, "user_id": uid} for i in range(WINDOW + BATCH)])
    latest = await memory.summarize_now(sid, uid)
    assert latest is not None and latest["version"] == 1
    key = stores.keys.key(uid, sid, "summary", "latest")
    cached = json.loads(await stores.redis.get(key))
    assert cached["summary"] == latest["summary"]
    await stores.redis.delete(key)
    assert await memory.get_summary(sid, uid) == latest  # from PostgreSQL
    assert json.loads(await stores.redis.get(key))["version"] == 1  # and re-cached
    # an older version never overwrites a newer cached one
    await memory._cache(uid, sid, {**latest, "version": 0, "summary": "stale"})
    assert (await memory.get_summary(sid, uid)) == latest


async def test_tenant_isolation_and_clear(
    memory: ConversationSummaryMemory, stores: Stores, sid: str, uid: str
) -> None:
    other = uid + "-other"
    await memory.store_many([{**_turn(i), "session_id": sid, "user_id": uid} for i in range(WINDOW + BATCH)])
    await memory.summarize_now(sid, uid)
    await memory.store({"session_id": sid, "user_id": other, "content": "hello from another tenant"})
    ctx = await memory.get_context({"session_id": sid, "user_id": other})
    assert ctx.get("summary") == "" and [m["content"] for m in ctx.get("messages")] == ["hello from another tenant"]
    assert await memory.get_summary(sid, other) is None

    removed = await memory.clear(session_id=sid, user_id=uid)
    assert removed == WINDOW + BATCH + 1  # messages plus the one summary row
    assert await memory.get_summary(sid, uid) is None
    assert await memory.get_messages(sid, uid) == []
    assert len(await memory.get_messages(sid, other)) == 1
    assert await stores.redis.exists(stores.keys.key(uid, sid, "summary", "latest")) == 0


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"user_id": "u", "role": "user", "content": "x"}, "session_id"),
        ({"session_id": "s", "role": "robot", "content": "x"}, "role"),
        ({"session_id": "s", "role": "user"}, "content"),
        ({"session_id": "s", "role": "user", "content": "x", "metadata": 3}, "metadata"),
    ],
)
async def test_invalid_items_name_the_field_and_write_nothing(
    memory: ConversationSummaryMemory, stores: Stores, uid: str, item: dict[str, Any], field: str
) -> None:
    good = {"session_id": "s", "user_id": uid, "role": "user", "content": "fine"}
    with pytest.raises(ValidationError) as err:
        await memory.store_many([good, {"user_id": uid, **item}])
    assert err.value.field == field
    rows = await _rows(stores, "SELECT count(*) FROM memory_messages WHERE user_id = %s", uid)
    assert rows[0][0] == 0


async def test_get_context_requires_session_id(memory: ConversationSummaryMemory) -> None:
    with pytest.raises(ValidationError) as err:
        await memory.get_context({"query": "hi"})
    assert err.value.field == "session_id"


async def test_a_long_evicted_message_is_summarised_without_waiting_for_a_full_batch(
    base_config: dict[str, Any], stores: Stores, sid: str, uid: str
) -> None:
    rec = RecordingSummarizer()
    memory = ConversationSummaryMemory(
        _cfg(base_config, max_total_tokens=200), stores=stores, summarizer=rec, batch_size=BATCH
    )
    await memory.initialize()
    assert memory.summary_budget == 60
    long = "My name is Ana and I work as a nurse at Mercy Hospital in Boston. " * 8
    items = [{"session_id": sid, "user_id": uid, "role": "user", "content": long}]
    items += [{"session_id": sid, "user_id": uid, "role": "user", "content": f"short {i}"} for i in range(WINDOW)]
    refs = await memory.store_many(items)
    await memory.flush()
    history = await memory.get_summary_history(sid, uid)
    assert len(history) == 1 and history[0]["covers_to_id"] == int(refs[0].id) and history[0]["message_count"] == 1
    assert [len(batch) for _, batch in rec.calls] == [1]
    assert history[0]["token_count"] <= 60


# --- read cost bounded by the window, not the session length ---------------------------------------------
async def test_context_reads_the_window_not_the_session(
    memory: ConversationSummaryMemory, stores: Stores, sid: str, uid: str
) -> None:
    """A fully summarised 300-message session is read like a 14-message one: window + batch, one round trip."""
    fetched: list[int] = []
    buffer = memory.buffer
    real_read, real_get = buffer._read_cache, buffer.get_messages

    async def spy_read(user_id: str, session_id: str, start: int, **kw: Any) -> Any:
        out = await real_read(user_id, session_id, start, **kw)
        fetched.append(len(out.messages))
        return out

    async def spy_get(*args: Any, **kw: Any) -> Any:
        out = await real_get(*args, **kw)
        fetched.append(len(out))
        return out

    buffer._read_cache = spy_read  # type: ignore[method-assign]
    buffer.get_messages = spy_get  # type: ignore[method-assign]
    other = f"{sid}-short"
    await memory.store_many([{**_turn(i), "session_id": sid, "user_id": uid} for i in range(300)])
    await memory.store_many([{**_turn(i), "session_id": other, "user_id": uid} for i in range(WINDOW + BATCH)])
    for s in (sid, other):
        await memory.summarize_now(s, uid)
    await memory.get_context({"session_id": other, "user_id": uid})  # warm the caches
    await memory.get_context({"session_id": sid, "user_id": uid})
    per_read: dict[str, list[int]] = {}
    for s in (sid, other):
        fetched.clear()
        ctx = await memory.get_context({"session_id": s, "user_id": uid})
        per_read[s] = list(fetched)
        msgs = [i for i in ctx.items if i["section"] == "recent_conversation"]
        assert len(msgs) == WINDOW  # the uncovered window, newest last
        assert ctx.get("unsummarized_older_messages") == 0
    bound = WINDOW + BATCH + 8  # window + one batch + the buffer's duplicate slack
    assert len(per_read[sid]) == 1 and per_read[sid][0] <= bound, per_read  # one read, not 200 messages
    assert len(per_read[other]) == 1 and per_read[other][0] <= bound, per_read
    assert memory.last_read_messages <= bound


async def test_summary_only_context_reads_no_messages(
    memory: ConversationSummaryMemory, sid: str, uid: str
) -> None:
    """``get_summary_context`` (used when a buffer supplies the recent messages) returns only the summary."""
    await memory.store_many([{**_turn(i), "session_id": sid, "user_id": uid} for i in range(40)])
    latest = await memory.summarize_now(sid, uid)
    assert latest is not None
    ctx = await memory.get_summary_context({"session_id": sid, "user_id": uid}, max_tokens=2000)
    assert [i["section"] for i in ctx.items] == ["summary"]
    assert ctx.items[0]["content"] == latest["summary"] and ctx.get("messages") == []
    assert memory.last_read_messages == 0
    # a session without a summary yet: no item, and the "none yet" marker spares PostgreSQL next time
    empty = await memory.get_summary_context({"session_id": f"{sid}-new", "user_id": uid})
    assert empty.items == [] and await memory.get_summary(f"{sid}-new", uid) is None
