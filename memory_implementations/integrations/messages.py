"""Count and trim chat messages with this package's tokenizer (offline-safe); context windows by model.

Messages may be OpenAI/Anthropic-style dicts (``content`` a string or a list of content blocks, optional
``tool_calls``/``name``), LangChain messages or LlamaIndex ``ChatMessage`` objects: anything with a role
(or a LangChain ``type``) and a content. A message costs 4 tokens of framing plus its parts, and a
request 3 more for the reply's priming (as ``Tokenizer.count_messages``). Nothing that reaches the
model is counted as zero:

* text blocks cost their text; tool calls (OpenAI ``tool_calls``, LangChain ``tool_calls``, Anthropic
  ``tool_use`` blocks) cost their name and JSON arguments; ``tool_result`` blocks cost their content;
* images cost a fixed estimate, since their pixels are not known here: OpenAI ``image_url`` /
  ``input_image`` 85 tokens at ``detail="low"`` and 765 otherwise (a 1024x1024 high-detail image),
  Anthropic/LlamaIndex ``image`` blocks 1,600 (the ceiling for a full-size image);
* any other block (audio, files, documents) costs the tokens of its JSON with long payloads elided,
  at least 1.
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
#: Estimates for image blocks whose size is unknown (see the module docstring).
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_HIGH = 765
IMAGE_TOKENS_ANTHROPIC = 1600
#: Strings longer than this inside an unknown block (base64 payloads) are counted as a placeholder.
_ELIDE_CHARS = 256
Strategy = Literal["last", "first", "token"]
STRATEGIES: tuple[str, ...] = ("last", "first", "token")
_TEXT_BLOCKS = frozenset({"text", "input_text", "output_text"})
_OPENAI_IMAGES = frozenset({"image_url", "input_image"})


def message_role(message: Any) -> str:
    """The role of a dict, LangChain or LlamaIndex message (``human``/``ai`` mapped to ``user``/``assistant``)."""
    if isinstance(message, Mapping):
        role = message.get("role", "")
    else:
        role = getattr(message, "role", None) or getattr(message, "type", "")
    role = str(getattr(role, "value", role))
    return {"human": "user", "ai": "assistant", "developer": "system"}.get(role, role)


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _content(message: Any) -> Any:
    """The content to count: LlamaIndex ``blocks`` when present (its ``content`` drops non-text blocks)."""
    if not isinstance(message, Mapping):
        blocks = getattr(message, "blocks", None)
        if isinstance(blocks, list) and blocks:
            return blocks
    return _field(message, "content")


def _tool_calls(message: Any) -> Any:
    calls = _field(message, "tool_calls")
    if not calls and not isinstance(message, Mapping):
        kwargs = getattr(message, "additional_kwargs", None)
        calls = kwargs.get("tool_calls") if isinstance(kwargs, Mapping) else None
    return calls


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _elide(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _ELIDE_CHARS:
        return f"<{len(value)} characters>"
    if isinstance(value, Mapping):
        return {k: _elide(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_elide(v) for v in value]
    return value


def _block_tokens(tok: Tokenizer, block: Any) -> int:
    """Tokens of one content block (see the module docstring for the rules)."""
    if isinstance(block, str):
        return tok.count(block)
    kind = _field(block, "type") or _field(block, "block_type")
    kind = str(getattr(kind, "value", kind) or "")
    if kind in _TEXT_BLOCKS or (not kind and isinstance(_field(block, "text"), str)):
        return tok.count(str(_field(block, "text") or ""))
    if kind in _OPENAI_IMAGES:
        detail = _field(block, "detail") or _field(_field(block, "image_url") or {}, "detail")
        return IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
    if kind == "image":
        return IMAGE_TOKENS_ANTHROPIC
    if kind == "tool_use":
        return max(1, tok.count(str(_field(block, "name") or "")) + tok.count(_dump(_field(block, "input") or {})))
    if kind == "tool_result":
        return max(1, _content_tokens(tok, _field(block, "content")))
    raw = block if isinstance(block, Mapping) else getattr(block, "__dict__", str(block))
    return max(1, tok.count(_dump(_elide(raw))))


def _content_tokens(tok: Tokenizer, content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return tok.count(content)
    if isinstance(content, list | tuple):
        return sum(_block_tokens(tok, b) for b in content)
    return _block_tokens(tok, content)


def message_tokens(message: Any, tok: Tokenizer) -> int:
    """Tokens one message costs: framing, content blocks, tool calls and ``name``."""
    cost = PER_MESSAGE + _content_tokens(tok, _content(message))
    calls = _tool_calls(message)
    if calls:
        cost += tok.count(_dump(calls))
    name = _field(message, "name")
    if isinstance(name, str) and name:
        cost += 1 + tok.count(name)
    return cost


def message_text(message: Any) -> str:
    """The readable text of a message: its text parts, plus tool-call names and arguments."""
    text = text_of_content(_field(message, "content"))
    calls = _tool_calls(message)
    if calls:
        dumped = _dump(calls)
        text = f"{text}\n{dumped}" if text else dumped
    return text


def _check_messages(messages: Any) -> list[Any]:
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise ValidationError("'messages' must be a list of messages", field="messages")
    return list(messages)


def count_tokens(messages: Sequence[Any], model: str | None = None) -> int:
    """Tokens ``messages`` cost as a chat request for ``model`` (framing, blocks and tool calls included)."""
    msgs = _check_messages(messages)
    tok = get_tokenizer(model)
    return sum(message_tokens(m, tok) for m in msgs) + (PRIMING if msgs else 0)


#: The earlier name of :func:`count_tokens`.
count_message_tokens = count_tokens


class _CharsPerToken(Tokenizer):
    """The tokenizer's chars/4 fallback, without loading an encoding."""

    def _load(self) -> None:
        """Keep the chars/4 method."""


_APPROX = _CharsPerToken("chars/4")


def count_tokens_approximate(messages: Sequence[Any]) -> int:
    """A fast estimate without a tokenizer: four characters per token, same framing and block rules."""
    msgs = _check_messages(messages)
    return sum(message_tokens(m, _APPROX) for m in msgs) + (PRIMING if msgs else 0)


#: Context windows (tokens) by model-name prefix, longest prefix first; from the providers' model pages.
CONTEXT_LIMITS: tuple[tuple[str, int], ...] = (
    ("gpt-4.1", 1_047_576), ("gpt-4o", 128_000), ("gpt-4-turbo", 128_000), ("gpt-4-32k", 32_768),
    ("gpt-4", 8_192), ("gpt-3.5-turbo", 16_385), ("gpt-5", 400_000), ("o1-mini", 128_000), ("o1", 200_000),
    ("o3", 200_000), ("o4-mini", 200_000), ("claude", 200_000), ("gemini-1.5-pro", 2_097_152),
    ("gemini-1.5-flash", 1_048_576), ("gemini-2", 1_048_576), ("gemini", 1_048_576),
)
DEFAULT_CONTEXT_LIMIT = 8_192


def get_context_limit(model: str, default: int = DEFAULT_CONTEXT_LIMIT) -> int:
    """The context window of ``model`` in tokens (longest known name prefix), else ``default``."""
    if not isinstance(model, str) or not model.strip():
        raise ValidationError("'model' must be a non-empty string", field="model")
    name = model.strip().lower().rsplit("/", 1)[-1]  # "openai/gpt-4o", "models/gemini-2.5-flash"
    best = max((p for p, _ in CONTEXT_LIMITS if name.startswith(p)), key=len, default=None)
    return dict(CONTEXT_LIMITS)[best] if best is not None else default


def _shorten(message: Any, tok: Tokenizer, room: int) -> Any | None:
    """A copy of a dict message with its string content cut to fit ``room`` tokens (None when impossible)."""
    if not isinstance(message, Mapping) or not isinstance(message.get("content"), str) or message.get("tool_calls"):
        return None
    budget = room - message_tokens({**message, "content": ""}, tok)
    if budget <= 0:
        return None
    cut = tok.truncate(message["content"], budget)
    return {**message, "content": cut} if cut else None


def _non_negative(value: Any, field: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValidationError(f"'{field}' must be a non-negative integer", field=field)
    return value


def _leading_system(msgs: list[Any]) -> list[Any]:
    head: list[Any] = []
    while len(head) < len(msgs) and message_role(msgs[len(head)]) == "system":
        head.append(msgs[len(head)])
    return head


def _drop_orphans(kept: list[Any], start_on: str | None) -> list[Any]:
    """Drop leading tool results (their call was cut) and, with ``start_on``, messages before that role."""
    while kept and message_role(kept[0]) == "tool":
        kept.pop(0)
    if start_on is not None:
        while kept and message_role(kept[0]) != start_on:
            kept.pop(0)
    return kept


def trim_messages(
    messages: Sequence[M],
    max_tokens: int | None = None,
    model: str | None = None,
    strategy: Strategy = "last",
    keep_system: bool = True,
    *,
    max_messages: int | None = None,
    preserve_system: bool | None = None,
    allow_partial: bool = False,
    start_on: str | None = None,
) -> list[M]:
    """The longest run of whole messages within ``max_tokens`` and/or ``max_messages``, order kept.

    ``strategy="last"`` keeps the newest messages, ``"first"`` the oldest; ``"token"`` keeps the newest
    by token budget alone (``max_tokens`` required, ``max_messages`` not allowed). At least one limit
    must be given. ``preserve_system`` (alias ``keep_system``) always keeps the leading system
    message(s) and spends the rest of the budget on the others (ValidationError when they alone exceed
    it). ``allow_partial`` cuts the boundary dict message (string content) to fill the remaining room.
    With ``"last"``/``"token"``, tool results whose assistant tool call was cut are dropped too, and
    ``start_on="user"`` drops messages before the first kept user message (Anthropic's rule).
    """
    _non_negative(max_tokens, "max_tokens")
    _non_negative(max_messages, "max_messages")
    if strategy not in STRATEGIES:
        raise ValidationError(f"'strategy' must be one of {', '.join(STRATEGIES)}; got {strategy!r}", field="strategy")
    if strategy == "token" and (max_tokens is None or max_messages is not None):
        raise ValidationError("strategy 'token' trims by 'max_tokens' alone", field="max_tokens")
    if max_tokens is None and max_messages is None:
        raise ValidationError("give 'max_tokens' and/or 'max_messages'", field="max_tokens")
    msgs = _check_messages(messages)
    keep_head = keep_system if preserve_system is None else preserve_system
    tok = get_tokenizer(model)
    head = _leading_system(msgs) if keep_head else []
    rest = msgs[len(head) :]
    fixed = sum(message_tokens(m, tok) for m in head)
    if max_tokens is not None and head and fixed + PRIMING > max_tokens:
        raise ValidationError(
            f"the system message(s) alone take {fixed + PRIMING} tokens; max_tokens is {max_tokens}",
            field="max_tokens",
        )
    room = max_tokens - fixed - PRIMING if max_tokens is not None else None
    newest_first = strategy != "first"
    kept: list[Any] = []
    used = 0
    for m in reversed(rest) if newest_first else rest:
        if max_messages is not None and len(kept) >= max_messages:
            break
        cost = message_tokens(m, tok)
        if room is not None and used + cost > room:
            if allow_partial:
                part = _shorten(m, tok, room - used)
                if part is not None:
                    kept.append(part)
            break
        kept.append(m)
        used += cost
    if newest_first:
        kept = _drop_orphans(kept[::-1], start_on)
    if not kept and not head:
        return []
    return [*head, *kept]


__all__ = [
    "IMAGE_TOKENS_ANTHROPIC",
    "IMAGE_TOKENS_HIGH",
    "IMAGE_TOKENS_LOW",
    "STRATEGIES",
    "count_message_tokens",
    "count_tokens",
    "count_tokens_approximate",
    "get_context_limit",
    "message_role",
    "message_text",
    "message_tokens",
    "trim_messages",
]
