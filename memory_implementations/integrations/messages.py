"""Count and trim chat messages with this package's tokenizer (offline-safe, same counts as the composer).

Messages may be OpenAI/Anthropic-style dicts (``content`` a string or a list of content blocks, optional
``tool_calls``), LangChain messages or LlamaIndex ``ChatMessage`` objects: anything with a role (or a
LangChain ``type``) and a content. Counting follows ``Tokenizer.count_messages``: 4 tokens of framing per
message plus its text, plus 3 for the reply's priming when there is at least one message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from ..errors import ValidationError
from ..tokens import Tokenizer, get_tokenizer
from ._conversation import text_of_content

M = TypeVar("M")
#: Framing tokens of one message and of the reply priming (as ``Tokenizer.count_messages``).
PER_MESSAGE = 4
PRIMING = 3
Strategy = Literal["last", "first"]


def message_role(message: Any) -> str:
    """The role of a dict, LangChain or LlamaIndex message (``human``/``ai`` mapped to ``user``/``assistant``)."""
    if isinstance(message, Mapping):
        role = message.get("role", "")
    else:
        role = getattr(message, "role", None) or getattr(message, "type", "")
    role = str(getattr(role, "value", role))
    return {"human": "user", "ai": "assistant", "developer": "system"}.get(role, role)


def message_text(message: Any) -> str:
    """Everything of a message that costs tokens: its text, plus tool-call names and arguments."""
    if isinstance(message, Mapping):
        content, tool_calls = message.get("content"), message.get("tool_calls")
    else:
        content, tool_calls = getattr(message, "content", None), getattr(message, "tool_calls", None)
        if tool_calls is None:
            kwargs = getattr(message, "additional_kwargs", None)
            tool_calls = kwargs.get("tool_calls") if isinstance(kwargs, Mapping) else None
    text = text_of_content(content)
    if tool_calls:
        try:
            calls = json.dumps(tool_calls, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            calls = str(tool_calls)
        text = f"{text}\n{calls}" if text else calls
    return text


def _tokenizer(model: str | None) -> Tokenizer:
    return get_tokenizer(model)


def _cost(tok: Tokenizer, message: Any) -> int:
    return PER_MESSAGE + tok.count(message_text(message))


def count_message_tokens(messages: Sequence[Any], model: str | None = None) -> int:
    """Tokens ``messages`` cost as a chat request for ``model`` (framing included)."""
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise ValidationError("'messages' must be a list of messages", field="messages")
    tok = _tokenizer(model)
    return sum(_cost(tok, m) for m in messages) + (PRIMING if messages else 0)


def _shorten(message: Any, tok: Tokenizer, room: int) -> Any | None:
    """A copy of a dict message with its string content cut to fit ``room`` tokens (None when impossible)."""
    if not isinstance(message, Mapping) or not isinstance(message.get("content"), str) or message.get("tool_calls"):
        return None
    budget = room - PER_MESSAGE
    if budget <= 0:
        return None
    cut = tok.truncate(message["content"], budget)
    return {**message, "content": cut} if cut else None


def trim_messages(
    messages: Sequence[M],
    max_tokens: int,
    model: str | None = None,
    strategy: Strategy = "last",
    keep_system: bool = True,
    *,
    max_messages: int | None = None,
    allow_partial: bool = False,
    start_on: str | None = None,
) -> list[M]:
    """The longest run of whole messages that fits ``max_tokens`` (``count_message_tokens``), order kept.

    ``strategy="last"`` keeps the newest messages, ``"first"`` the oldest. ``keep_system`` always keeps
    the leading system message(s) and spends the rest of the budget on the others (ValidationError when
    they alone exceed it). ``max_messages`` also caps how many non-system messages are kept.
    ``allow_partial`` cuts the boundary dict message (string content) to fill the remaining room.
    With ``"last"``, tool results whose assistant tool call was cut are dropped too, and
    ``start_on="user"`` drops messages before the first kept user message (Anthropic's rule).
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise ValidationError("'max_tokens' must be a non-negative integer", field="max_tokens")
    if strategy not in ("last", "first"):
        raise ValidationError(f"'strategy' must be 'last' or 'first'; got {strategy!r}", field="strategy")
    if max_messages is not None and (isinstance(max_messages, bool) or not isinstance(max_messages, int)
                                     or max_messages < 0):
        raise ValidationError("'max_messages' must be a non-negative integer", field="max_messages")
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise ValidationError("'messages' must be a list of messages", field="messages")
    tok = _tokenizer(model)
    msgs = list(messages)
    head: list[M] = []
    if keep_system:
        while len(head) < len(msgs) and message_role(msgs[len(head)]) == "system":
            head.append(msgs[len(head)])
    rest = msgs[len(head) :]
    fixed = sum(_cost(tok, m) for m in head)
    if head and fixed + PRIMING > max_tokens:
        raise ValidationError(
            f"the system message(s) alone take {fixed + PRIMING} tokens; max_tokens is {max_tokens}",
            field="max_tokens",
        )
    room = max_tokens - fixed - PRIMING
    order = list(reversed(rest)) if strategy == "last" else list(rest)
    kept: list[M] = []
    used = 0
    for m in order:
        if max_messages is not None and len(kept) >= max_messages:
            break
        cost = _cost(tok, m)
        if used + cost > room:
            if allow_partial:
                part = _shorten(m, tok, room - used)
                if part is not None:
                    kept.append(part)
            break
        kept.append(m)
        used += cost
    if strategy == "last":
        kept.reverse()
        while kept and message_role(kept[0]) == "tool":
            kept.pop(0)  # a tool result without the assistant message that called it is invalid
        if start_on is not None:
            while kept and message_role(kept[0]) != start_on:
                kept.pop(0)
    if not kept and not head:
        return []
    return [*head, *kept]


__all__ = ["count_message_tokens", "message_role", "message_text", "trim_messages"]
