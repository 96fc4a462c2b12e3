"""Integrations: LLM tool schemas, a fail-open LLM wrapper, message utilities, LlamaIndex and LangChain stores.

Names are imported on first use, so ``import memory_implementations.integrations`` costs nothing and
the optional frameworks (llama-index-core, langchain-core) are only looked for when their store is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # tools.py
    "TOOLS": "tools",
    "MemoryTool": "tools",
    "memory_prompt": "tools",
    "memory_tools": "tools",
    "parse_tool_call": "tools",
    "resolve_tool_call": "tools",
    "resolve_tool_calls": "tools",
    "tool_result_message": "tools",
    # failopen.py
    "MemoryAugmentedLLM": "failopen",
    "MemoryReply": "failopen",
    "PendingTurn": "failopen",
    "failopen_wrapper": "failopen",
    "reply_text": "failopen",
    "with_memory": "failopen",
    # messages.py
    "count_message_tokens": "messages",
    "trim_messages": "messages",
    # llamaindex.py / langchain.py (optional frameworks)
    "LLAMA_INDEX_AVAILABLE": "llamaindex",
    "MemoryChatStore": "llamaindex",
    "LANGCHAIN_AVAILABLE": "langchain",
    "MemoryChatMessageHistory": "langchain",
}

if TYPE_CHECKING:
    from .failopen import MemoryAugmentedLLM, MemoryReply, PendingTurn, failopen_wrapper, reply_text, with_memory
    from .langchain import LANGCHAIN_AVAILABLE, MemoryChatMessageHistory
    from .llamaindex import LLAMA_INDEX_AVAILABLE, MemoryChatStore
    from .messages import count_message_tokens, trim_messages
    from .tools import (
        TOOLS,
        MemoryTool,
        memory_prompt,
        memory_tools,
        parse_tool_call,
        resolve_tool_call,
        resolve_tool_calls,
        tool_result_message,
    )


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first access."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Exported names (for completion)."""
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "LANGCHAIN_AVAILABLE",
    "LLAMA_INDEX_AVAILABLE",
    "TOOLS",
    "MemoryAugmentedLLM",
    "MemoryChatMessageHistory",
    "MemoryChatStore",
    "MemoryReply",
    "MemoryTool",
    "PendingTurn",
    "count_message_tokens",
    "failopen_wrapper",
    "memory_prompt",
    "memory_tools",
    "parse_tool_call",
    "reply_text",
    "resolve_tool_call",
    "resolve_tool_calls",
    "tool_result_message",
    "trim_messages",
    "with_memory",
]
