"""What a stored conversation turn adds to long-term (vector) memory.

Every message of a turn is indexed, whoever said it: the user's facts and the assistant's answers
(a recommendation, a booking) are both things a later question may need. Each item keeps its
partner turns in its metadata (the question it answers, the answer it got) so a hit can be shown
with them, and the time it was said so the context can date it. A user message answers the
assistant's question of the previous turn when there was one ("Which colour did you pick?" /
"Sage green."), and gets a reply: both are its partners. A short message ("Lisbon.", "yes, the
blue one") means little alone: it is embedded together with its first partner, while its own text stays
what is stored and shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .types import Message

if TYPE_CHECKING:
    from .base import BaseMemory
    from .stores import Stores

#: Messages with fewer words than this are embedded together with their partner turn.
SHORT_MESSAGE_WORDS = 4


_PREVIOUS = (
    "SELECT id, role, content, created_at FROM memory_messages "
    "WHERE user_id = %s AND session_id = %s AND id < %s ORDER BY id DESC LIMIT 2"
)


async def previous_messages(stores: Stores, message: Message, message_id: int | None) -> list[Message]:
    """The (up to) two messages said just before ``message`` (id ``message_id``) in its session, newest first."""
    if message_id is None:
        return []
    from .memories._shared import pg_fetch

    rows = await pg_fetch(stores, _PREVIOUS, (message.user_id, message.session_id, message_id))
    return [
        Message(session_id=message.session_id, role=role, content=content, user_id=message.user_id,
                created_at=created, id=mid)
        for mid, role, content, created in rows
    ]


def _answers(previous: Message | None) -> bool:
    """Whether ``previous`` is an assistant question the next user message answers."""
    return previous is not None and previous.role == "assistant" and "?" in previous.content


def _item(msg: Message, partners: Sequence[Message], metadata: dict[str, Any]) -> dict[str, Any]:
    """One vector-tier item: ``msg`` with its partners (embedded with the first when it is short)."""
    meta: dict[str, Any] = {**metadata, "source": "conversation", "message_id": msg.id}
    if partners:
        meta["partners"] = [
            {
                "role": p.role,
                "content": p.content,
                "message_id": p.id,
                "created_at": p.created_at.isoformat() if p.created_at else None,
            }
            for p in partners
        ]
    item: dict[str, Any] = {
        "content": msg.content,
        "user_id": msg.user_id,
        "session_id": msg.session_id,
        "role": msg.role,
        "metadata": meta,
        "created_at": msg.created_at,
    }
    if partners and len(msg.content.split()) < SHORT_MESSAGE_WORDS:
        item["embed_text"] = f"{partners[0].content}\n{msg.content}"
    return item


def turn_index_items(
    messages: Sequence[Message], ids: Sequence[int | None], previous: Sequence[Message] = ()
) -> list[dict[str, Any]]:
    """Vector-tier items for the messages of one turn (``ids``: their message ids in the record).

    ``previous`` are the messages before the turn, newest first (:func:`previous_messages`). When the
    newest is an assistant question the turn's user message answers, each becomes the other's
    partner: the question is indexed again with its answer (the upsert keeps one row per content).
    """
    turn = [replace(m, id=ids[i]) for i, m in enumerate(messages)]
    question = previous[0] if previous and _answers(previous[0]) else None
    items: list[dict[str, Any]] = []
    for i, msg in enumerate(turn):
        partners = [question] if question is not None and msg.role == "user" else []
        if len(turn) == 2:
            partners.append(turn[1 - i])
        items.append(_item(msg, partners, messages[i].metadata))
    answer = next((m for m in turn if m.role == "user"), None)
    if question is not None and answer is not None:
        asked_by = [previous[1]] if len(previous) > 1 and previous[1].role == "user" else []
        items.append(_item(question, [*asked_by, answer], {"role": question.role}))
    return items


async def index_turn(
    stores: Stores, vector: BaseMemory, messages: Sequence[Message], ids: Sequence[int | None]
) -> None:
    """Embed the messages of one stored turn (``ids``: their ids in the record) into the vector tier ``vector``."""
    previous = await previous_messages(stores, messages[0], ids[0])
    await vector.store_many(turn_index_items(messages, ids, previous))  # type: ignore[attr-defined]


__all__ = ["SHORT_MESSAGE_WORDS", "index_turn", "previous_messages", "turn_index_items"]
