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
from typing import TYPE_CHECKING, Any

from .types import Message

if TYPE_CHECKING:
    from .stores import Stores

#: Messages with fewer words than this are embedded together with their partner turn.
SHORT_MESSAGE_WORDS = 4


_PREVIOUS = (
    "SELECT id, role, content, created_at FROM memory_messages "
    "WHERE user_id = %s AND session_id = %s AND id < %s ORDER BY id DESC LIMIT 1"
)


async def previous_message(stores: Stores, message: Message, message_id: int | None) -> Message | None:
    """The message said just before ``message`` (id ``message_id``) in its session, from the record."""
    if message_id is None:
        return None
    from .memories._shared import pg_fetch

    rows = await pg_fetch(stores, _PREVIOUS, (message.user_id, message.session_id, message_id))
    if not rows:
        return None
    mid, role, content, created = rows[0]
    return Message(session_id=message.session_id, role=role, content=content, user_id=message.user_id,
                   created_at=created, id=mid)


def _answers(previous: Message | None) -> bool:
    """Whether ``previous`` is an assistant question the next user message answers."""
    return previous is not None and previous.role == "assistant" and "?" in previous.content


def turn_index_items(
    messages: Sequence[Message], ids: Sequence[int | None], previous: Message | None = None
) -> list[dict[str, Any]]:
    """Vector-tier items for the messages of one turn (``ids``: their message ids in the record).

    ``previous`` is the message before the turn; an assistant question there is the partner of the
    turn's user message.
    """
    items: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        metadata: dict[str, Any] = {**msg.metadata, "source": "conversation", "message_id": ids[i]}
        partners: list[Message] = []
        if msg.role == "user" and previous is not None and _answers(previous):
            partners.append(previous)
        if len(messages) == 2:
            other = messages[1 - i]
            partners.append(Message(session_id=other.session_id, role=other.role, content=other.content,
                                    created_at=other.created_at, id=ids[1 - i]))
        if partners:
            metadata["partners"] = [
                {
                    "role": p.role,
                    "content": p.content,
                    "message_id": p.id,
                    "created_at": p.created_at.isoformat() if p.created_at else None,
                }
                for p in partners
            ]
        embed_text = None
        if partners and len(msg.content.split()) < SHORT_MESSAGE_WORDS:
            embed_text = f"{partners[0].content}\n{msg.content}"
        item: dict[str, Any] = {
            "content": msg.content,
            "user_id": msg.user_id,
            "session_id": msg.session_id,
            "role": msg.role,
            "metadata": metadata,
            "created_at": msg.created_at,
        }
        if embed_text is not None:
            item["embed_text"] = embed_text
        items.append(item)
    return items


__all__ = ["SHORT_MESSAGE_WORDS", "previous_message", "turn_index_items"]
