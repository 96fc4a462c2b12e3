"""The memory tools as framework tool objects: LangChain ``StructuredTool`` and LlamaIndex ``FunctionTool``.

``langchain_tools(orchestrator, user_id=..., session_id=...)`` and ``llamaindex_tools(...)`` give one tool
per memory tool the orchestrator can run (see :mod:`.tools`), bound to the application's user and
session — the model never chooses whose memory it touches. Each tool validates its arguments against
the same JSON schema the OpenAI/Anthropic definitions carry and returns the JSON text of the result;
a memory error (bad argument, unknown id, backend down) comes back as an error text the model can act
on, never as an exception that would end the agent's run.

The tools are async (``ainvoke`` / ``acall``), as agents built on these frameworks run them: the
orchestrator's connections belong to the application's event loop. A blocking call gets an error text
saying so. LangChain / LangGraph agents (``create_react_agent``, ``ToolNode``) and LlamaIndex agents
(``FunctionAgent``, ``ReActAgent``) take the lists as they are.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..errors import ValidationError
from ..orchestrator import MemoryOrchestrator
from .tools import TOOLS, memory_tools, resolve_tool_call

SYNC_ERROR = ("memory tools run asynchronously (the orchestrator's connections belong to the event loop): "
              "use the agent's async API (ainvoke / acall / arun)")


def _bound(orchestrator: MemoryOrchestrator, user_id: str, session_id: str | None,
           include: Sequence[str] | None) -> list[tuple[str, str, dict[str, Any], Callable[..., Awaitable[str]]]]:
    """(name, description, JSON schema, coroutine) for each tool, bound to the user and session."""
    if not isinstance(orchestrator, MemoryOrchestrator):
        raise ValidationError(f"'orchestrator' must be a MemoryOrchestrator, got {type(orchestrator).__name__}",
                              field="orchestrator")
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValidationError("'user_id' is required and must be a non-empty string", field="user_id")
    if session_id is not None and (not isinstance(session_id, str) or not session_id.strip()):
        raise ValidationError("'session_id' must be a non-empty string", field="session_id")
    out = []
    for definition in memory_tools("openai", include, orchestrator=orchestrator):
        fn = definition["function"]

        def make(name: str) -> Callable[..., Awaitable[str]]:
            async def run(**arguments: Any) -> str:
                outcome = await resolve_tool_call(orchestrator, {"name": name, "arguments": arguments},
                                                  user_id=user_id, session_id=session_id)
                return str(outcome["formatted_response"])

            run.__name__ = name
            run.__doc__ = TOOLS[name].description
            return run

        out.append((fn["name"], fn["description"], fn["parameters"], make(fn["name"])))
    return out


def _sync_refusal(**_: Any) -> str:
    """The answer to a blocking call (see the module docstring)."""
    return json.dumps({"error": SYNC_ERROR, "field": None, "code": "validation_error"})


def langchain_tools(
    orchestrator: MemoryOrchestrator, *, user_id: str, session_id: str | None = None,
    include: Sequence[str] | None = None,
) -> list[Any]:
    """LangChain ``StructuredTool``s for the memory tools, bound to ``user_id`` / ``session_id``."""
    try:
        from langchain_core.tools import StructuredTool
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError('langchain_tools needs langchain-core: pip install "memory_implementations[langchain]"') \
            from exc
    return [StructuredTool(name=name, description=description, args_schema=schema, coroutine=run,
                           func=_sync_refusal)
            for name, description, schema, run in _bound(orchestrator, user_id, session_id, include)]


def llamaindex_tools(
    orchestrator: MemoryOrchestrator, *, user_id: str, session_id: str | None = None,
    include: Sequence[str] | None = None,
) -> list[Any]:
    """LlamaIndex ``FunctionTool``s for the memory tools, bound to ``user_id`` / ``session_id``."""
    try:
        from llama_index.core.tools import FunctionTool, ToolMetadata
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError('llamaindex_tools needs llama-index-core: pip install "memory_implementations[llamaindex]"') \
            from exc

    @dataclasses.dataclass
    class SchemaMetadata(ToolMetadata):
        """Tool metadata whose parameters are the memory tool's own JSON schema."""

        parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

        def get_parameters_dict(self) -> dict[str, Any]:
            """The JSON schema the model sees."""
            return json.loads(json.dumps(self.parameters))

    return [FunctionTool(fn=_sync_refusal, async_fn=run,
                         metadata=SchemaMetadata(name=name, description=description, parameters=schema))
            for name, description, schema, run in _bound(orchestrator, user_id, session_id, include)]


__all__ = ["SYNC_ERROR", "langchain_tools", "llamaindex_tools"]
