"""Integrations: SDK clients with memory, LLM tools, a fail-open wrapper, message utilities, framework adapters.

Names are imported on first use, so ``import memory_implementations.integrations`` costs nothing and
the optional frameworks (llama-index-core, langchain-core, langgraph; extras ``[llamaindex]``,
``[langchain]``, ``[langgraph]``) are only looked for when their adapter is used.
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
    "run_tool_call": "tools",
    "tool_result_message": "tools",
    # agent_tools.py (optional frameworks)
    "langchain_tools": "agent_tools",
    "llamaindex_tools": "agent_tools",
    # failopen.py
    "MemoryAugmentedLLM": "failopen",
    "MemoryReply": "failopen",
    "PendingTurn": "failopen",
    "failopen_wrapper": "failopen",
    "reply_text": "failopen",
    "call_with_memory": "failopen",
    # clients.py
    "with_memory": "clients",
    "ClientMemory": "clients",
    "MemoryLoopError": "clients",
    "MemoryOpenAI": "clients",
    "MemoryAsyncOpenAI": "clients",
    "MemoryGenAI": "clients",
    "MemoryAsyncGenAI": "clients",
    # messages.py
    "count_message_tokens": "messages",
    "count_tokens": "messages",
    "count_tokens_approximate": "messages",
    "get_context_limit": "messages",
    # summarize.py
    "SummarizationMiddleware": "summarize",
    "SummaryResult": "summarize",
    "asummarize_messages": "summarize",
    "summarize_messages": "summarize",
    "trim_messages": "messages",
    # llamaindex.py / langchain.py (optional frameworks)
    "LLAMA_INDEX_AVAILABLE": "llamaindex",
    "MemoryChatStore": "llamaindex",
    "OrchestratorMemoryBlock": "llamaindex_block",
    "LANGCHAIN_AVAILABLE": "langchain",
    "MemoryChatMessageHistory": "langchain",
    # langgraph.py (optional framework: importing it without langgraph raises ImportError)
    "MemoryStore": "langgraph",
}

if TYPE_CHECKING:
    from .agent_tools import langchain_tools, llamaindex_tools
    from .clients import (
        ClientMemory,
        MemoryAsyncGenAI,
        MemoryAsyncOpenAI,
        MemoryGenAI,
        MemoryLoopError,
        MemoryOpenAI,
        with_memory,
    )
    from .failopen import (
        MemoryAugmentedLLM,
        MemoryReply,
        PendingTurn,
        call_with_memory,
        failopen_wrapper,
        reply_text,
    )
    from .langchain import LANGCHAIN_AVAILABLE, MemoryChatMessageHistory
    from .langgraph import MemoryStore
    from .llamaindex import LLAMA_INDEX_AVAILABLE, MemoryChatStore
    from .llamaindex_block import OrchestratorMemoryBlock
    from .messages import (
        count_message_tokens,
        count_tokens,
        count_tokens_approximate,
        get_context_limit,
        trim_messages,
    )
    from .summarize import SummarizationMiddleware, SummaryResult, asummarize_messages, summarize_messages
    from .tools import (
        TOOLS,
        MemoryTool,
        memory_prompt,
        memory_tools,
        parse_tool_call,
        resolve_tool_call,
        resolve_tool_calls,
        run_tool_call,
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
    "ClientMemory",
    "MemoryAsyncGenAI",
    "MemoryAsyncOpenAI",
    "MemoryAugmentedLLM",
    "MemoryChatMessageHistory",
    "MemoryChatStore",
    "MemoryGenAI",
    "MemoryLoopError",
    "MemoryOpenAI",
    "MemoryReply",
    "MemoryStore",
    "MemoryTool",
    "OrchestratorMemoryBlock",
    "PendingTurn",
    "SummarizationMiddleware",
    "SummaryResult",
    "asummarize_messages",
    "call_with_memory",
    "count_message_tokens",
    "count_tokens",
    "count_tokens_approximate",
    "failopen_wrapper",
    "get_context_limit",
    "langchain_tools",
    "llamaindex_tools",
    "memory_prompt",
    "memory_tools",
    "parse_tool_call",
    "reply_text",
    "resolve_tool_call",
    "resolve_tool_calls",
    "run_tool_call",
    "summarize_messages",
    "tool_result_message",
    "trim_messages",
    "with_memory",
]
