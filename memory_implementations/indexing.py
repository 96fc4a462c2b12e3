"""What a stored conversation turn adds to long-term (vector) memory.

Every message of a turn is indexed, whoever said it: the user's facts and the assistant's answers
(a recommendation, a booking) are both things a later question may need. Each item keeps its
partner turn in its metadata (the question it answers, the answer it got) so a hit can be shown
with it, and the time it was said so the context can date it. A short message ("Lisbon.", "yes,
the blue one") means little alone: it is embedded together with its partner, while its own text
stays what is stored and shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .types import Message

#: Messages with fewer words than this are embedded together with their partner turn.
SHORT_MESSAGE_WORDS = 4


def turn_index_items(messages: Sequence[Message], ids: Sequence[int | None]) -> list[dict[str, Any]]:
    """Vector-tier items for the messages of one turn (``ids``: their message ids in the record)."""
    items: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        partner_index = 1 - i if len(messages) == 2 else None
        metadata: dict[str, Any] = {**msg.metadata, "source": "conversation", "message_id": ids[i]}
        embed_text = None
        if partner_index is not None:
            other = messages[partner_index]
            metadata["partner"] = {
                "role": other.role,
                "content": other.content,
                "message_id": ids[partner_index],
                "created_at": other.created_at.isoformat() if other.created_at else None,
            }
            if len(msg.content.split()) < SHORT_MESSAGE_WORDS:
                embed_text = f"{other.content}\n{msg.content}"
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


__all__ = ["SHORT_MESSAGE_WORDS", "turn_index_items"]
