"""Catching up long-term memory that a previous process never wrote.

A turn's messages are the record (``memory_messages``, written before ``store_turn`` returns); their
vector rows are derived from them by a background job. A process that exits without ``close()`` (or
is killed) drops the jobs still pending, so on start the orchestrator looks for recent messages no
vector row was written for and indexes them through the same code as a live turn
(:func:`indexing.index_turn`, partners included).

Bounded and cheap: only the newest ``WINDOW`` messages of the table are looked at, ``BATCH`` at a
time, and in each session only the messages after the newest one that has a vector row (its tail):
a memory deleted on purpose from the middle of a conversation is not brought back. Idempotent: the
vector tier upserts by (user, namespace, content hash), and a message once indexed is no longer
found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from .indexing import index_turn
from .memories._shared import pg_fetch
from .types import Message

if TYPE_CHECKING:
    from .base import BaseMemory
    from .stores import Stores

log = structlog.get_logger("memory_implementations.catch_up")

#: How many of the newest messages (by id, over all users) are checked for a missing vector row.
WINDOW = 5000
#: Messages read (and indexed) per batch.
BATCH = 200

_INDEXED = (
    "EXISTS (SELECT 1 FROM memory_vectors v WHERE v.user_id = m.user_id "
    "AND v.metadata @> jsonb_build_object('message_id', m.id))"
)
_FLOOR = "SELECT coalesce(max(id), 0) - %s FROM memory_messages"
_MISSING = (
    "SELECT m.id, m.user_id, m.session_id, m.role, m.content, m.metadata, m.created_at "
    "FROM memory_messages m WHERE m.id > %s AND m.role IN ('user', 'assistant') "
    f"AND NOT {_INDEXED} ORDER BY m.id LIMIT %s"
)
# per session: the newest message (in the window) that has a vector row
_TAIL_STARTS = (
    "SELECT m.user_id, m.session_id, max(m.id) FROM memory_messages m "
    "JOIN unnest(%s::text[], %s::text[]) AS s(user_id, session_id) "
    "ON m.user_id = s.user_id AND m.session_id = s.session_id "
    f"WHERE m.id > %s AND {_INDEXED} GROUP BY m.user_id, m.session_id"
)


def group_turns(messages: Sequence[Message]) -> list[list[Message]]:
    """Split messages (ordered by id) into turns: a user message and the assistant reply right after it, else one."""
    turns: list[list[Message]] = []
    for msg in messages:
        last = turns[-1] if turns else None
        if (
            last is not None
            and len(last) == 1
            and last[0].role == "user"
            and msg.role == "assistant"
            and (last[0].user_id, last[0].session_id) == (msg.user_id, msg.session_id)
        ):
            last.append(msg)
        else:
            turns.append([msg])
    return turns


async def _missing(stores: Stores, after: int) -> tuple[list[Message], list[int]]:
    """The next batch of messages with id > ``after`` that no vector row refers to, kept when in their
    sessions' tails; and the ids of all that were read (fewer than ``BATCH``: the last batch)."""
    rows = await pg_fetch(stores, _MISSING, (after, BATCH))
    found = [
        Message(session_id=sid, role=role, content=content, user_id=uid, metadata=dict(meta or {}),
                created_at=created, id=mid)
        for mid, uid, sid, role, content, meta, created in rows
    ]
    if not found:
        return [], []
    sessions = sorted({(m.user_id, m.session_id) for m in found})
    starts: dict[tuple[str, str], int] = {
        (uid, sid): int(top)
        for uid, sid, top in await pg_fetch(
            stores, _TAIL_STARTS, ([u for u, _ in sessions], [s for _, s in sessions], after)
        )
    }
    return [m for m in found if (m.id or 0) > starts.get((m.user_id, m.session_id), 0)], [
        int(m.id or 0) for m in found
    ]


async def catch_up(stores: Stores, vector: BaseMemory, *, window: int = WINDOW) -> dict[str, Any]:
    """Index the recent messages that have no vector row (see the module doc); return what was done."""
    floor = int((await pg_fetch(stores, _FLOOR, (window,)))[0][0])
    after, messages, turns = floor, 0, 0
    while True:
        batch, read = await _missing(stores, after)
        for turn in group_turns(batch):
            await index_turn(stores, vector, turn, [m.id for m in turn])
            messages += len(turn)
            turns += 1
        if len(read) < BATCH:
            break
        after = max(read)
    if messages:
        log.info("catch_up_indexed", messages=messages, turns=turns,
                 reason="messages without a vector row: a process exited before embedding them, "
                        "or they were written without the vector tier")
    else:
        log.debug("catch_up_nothing_missing", window=window)
    return {"messages": messages, "turns": turns}


def schedule_catch_up(stores: Stores, vector: BaseMemory | None) -> bool:
    """Submit :func:`catch_up` to the background worker once per ``Stores`` when it applies; whether it was."""
    if vector is None or not stores.config.reindex_on_start or getattr(vector, "mode", "postgres") == "supabase":
        return False  # (with Supabase REST the vector rows are not in this database)
    state: dict[str, bool] = stores.shared("catch_up", dict)
    if state.get("scheduled"):
        return False
    state["scheduled"] = True

    async def job() -> None:
        await catch_up(stores, vector)

    stores.worker.submit(job, name="catch_up")
    return True


__all__ = ["BATCH", "WINDOW", "catch_up", "group_turns", "schedule_catch_up"]
