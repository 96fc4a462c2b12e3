"""Memory as LLM tools: schemas for OpenAI and Anthropic, ``resolve_tool_call``, and ``memory_prompt``.

``memory_tools(format)`` returns tool definitions an agent can call to use memory itself:

=====================  ====================  ================================================
tool                   tier                  does
=====================  ====================  ================================================
``search_memory``      vector_database       semantic search over the user's long-term memories
``remember``           vector_database       store one self-contained fact (de-duplicated)
``recall_conversation`` vector_database      search earlier conversation turns (all sessions or this one)
``get_user_profile``   key_value_store       read one preference, or all of them
``set_preference``     key_value_store       write a preference (the old value goes to history)
``edit_memory``        vector_database       correct one memory by id (content re-embedded, topics replaced)
``forget_memory``      vector_database / kv  delete one memory by id, or one preference by key
``get_working_memory`` working_memory        read this session's scratchpad: one key, or all items + reasoning
``set_working_memory`` working_memory        write a scratchpad item for this session (importance, TTL)
=====================  ====================  ================================================

``await resolve_tool_call(orchestrator, call, user_id=..., session_id=...)`` accepts what the model sent
(an OpenAI Chat Completions tool call, a Responses API ``function_call`` item or an Anthropic
``tool_use`` block, as SDK objects or dicts), validates the arguments against the tool's schema
(``ValidationError`` naming the argument) and runs it on the right tier. ``user_id`` and
``session_id`` always come from the application, never from the model: a tool call cannot reach
another user's memory. ``resolve_tool_calls`` does a batch and returns the tool-result messages to
send back, turning memory errors into error results the model can correct.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..base import BaseMemory
from ..config import MemoryConfig
from ..context import ComprehensiveContext, jsonable
from ..errors import ConfigError, MemoryError, NotFound, ValidationError
from ..memories.kv import KeyValueStoreMemory
from ..memories.vector import VectorDatabaseMemory
from ..memories.working import WorkingMemory
from ..orchestrator import MemoryOrchestrator
from ..tokens import Tokenizer, get_tokenizer
from ..types import ContextRequest, MemoryType

ToolFormat = Literal["openai", "anthropic", "openai_responses"]
PromptFormat = Literal["openai", "anthropic"]
FORMATS: tuple[str, ...] = ("openai", "anthropic", "openai_responses")
#: Longest fact ``remember`` accepts, in characters (a memory is one fact, not a document).
MAX_FACT_CHARS = 4000
MAX_RESULTS = 20
#: Metadata ``source`` of facts stored through ``remember`` (the orchestrator tags turns "conversation").
REMEMBER_SOURCE = "agent"
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


@dataclass(frozen=True)
class MemoryTool:
    """One tool: its name, what the model is told, its JSON-schema parameters and the tier it needs."""

    name: str
    description: str
    parameters: dict[str, Any]
    tiers: tuple[MemoryType, ...]

    def schema(self, format: ToolFormat = "openai") -> dict[str, Any]:
        """The definition in ``format``: OpenAI Chat Completions, OpenAI Responses or Anthropic."""
        params = json.loads(json.dumps(self.parameters))  # a deep copy the caller may modify
        if format == "openai":
            return {"type": "function",
                    "function": {"name": self.name, "description": self.description, "parameters": params}}
        if format == "openai_responses":
            return {"type": "function", "name": self.name, "description": self.description, "parameters": params}
        if format == "anthropic":
            return {"name": self.name, "description": self.description, "input_schema": params}
        raise ValidationError(f"'format' must be one of {', '.join(FORMATS)}; got {format!r}", field="format")


def _object(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "default": 5,
          "description": f"How many results to return (1-{MAX_RESULTS})."}

TOOLS: dict[str, MemoryTool] = {
    t.name: t
    for t in (
        MemoryTool(
            "search_memory",
            "Search the user's long-term memory (facts, preferences and things they said before) by meaning. "
            "Use it before answering anything that may depend on what the user told you in the past.",
            _object({"query": {"type": "string", "minLength": 1, "maxLength": 1000,
                               "description": "What to look for, in natural language."},
                     "limit": _LIMIT}, ["query"]),
            (MemoryType.VECTOR_DATABASE,),
        ),
        MemoryTool(
            "remember",
            "Store one self-contained fact about the user or their work in long-term memory so it can be "
            "recalled in later conversations (e.g. 'The user is allergic to penicillin'). One fact per call; "
            "storing the same fact twice is harmless.",
            _object({"content": {"type": "string", "minLength": 1, "maxLength": MAX_FACT_CHARS,
                                 "description": "The fact, written so it makes sense on its own."},
                     "topics": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64},
                                "maxItems": 10, "description": "Optional short topic labels."}}, ["content"]),
            (MemoryType.VECTOR_DATABASE,),
        ),
        MemoryTool(
            "recall_conversation",
            "Search earlier conversations with this user for what was said about a topic, across all past "
            "sessions or only the current one. Use it when the user refers to a previous discussion.",
            _object({"query": {"type": "string", "minLength": 1, "maxLength": 1000,
                               "description": "The topic to look for."},
                     "limit": _LIMIT,
                     "scope": {"type": "string", "enum": ["all_sessions", "this_session"],
                               "default": "all_sessions", "description": "Where to search."}}, ["query"]),
            (MemoryType.VECTOR_DATABASE,),
        ),
        MemoryTool(
            "get_user_profile",
            "Read the user's saved preferences and settings: one by key, or all of them when no key is given.",
            _object({"key": {"type": "string", "pattern": KEY_PATTERN,
                             "description": "A preference key such as 'language'; omit to get all."}}),
            (MemoryType.KEY_VALUE_STORE,),
        ),
        MemoryTool(
            "set_preference",
            "Save a user preference or setting under a short key (e.g. key 'answer_style', value 'brief'). "
            "It replaces the previous value of that key.",
            _object({"key": {"type": "string", "pattern": KEY_PATTERN,
                             "description": "Short identifier: letters, digits, '_', '.', '-' (max 64)."},
                     "value": {"anyOf": [{"type": "string", "maxLength": MAX_FACT_CHARS}, {"type": "number"},
                                         {"type": "boolean"}],
                               "description": "The preference value."}}, ["key", "value"]),
            (MemoryType.KEY_VALUE_STORE,),
        ),
        MemoryTool(
            "edit_memory",
            "Correct one long-term memory by its id (from search_memory results) when the user says it is "
            "wrong or out of date: give the corrected fact as content, and/or new topics.",
            _object({"memory_id": {"type": "string", "minLength": 1, "maxLength": 64,
                                   "description": "The id of a memory returned by search_memory."},
                     "content": {"type": "string", "minLength": 1, "maxLength": MAX_FACT_CHARS,
                                 "description": "The corrected fact, written so it makes sense on its own."},
                     "topics": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64},
                                "maxItems": 10, "description": "Replacement topic labels."}}, ["memory_id"]),
            (MemoryType.VECTOR_DATABASE,),
        ),
        MemoryTool(
            "forget_memory",
            "Delete one long-term memory by its id (from search_memory results), or one preference by its "
            "key, when the user asks you to forget it or it is wrong. Give exactly one of memory_id or key.",
            _object({"memory_id": {"type": "string", "minLength": 1, "maxLength": 64,
                                   "description": "The id of a memory returned by search_memory."},
                     "key": {"type": "string", "pattern": KEY_PATTERN, "description": "A preference key."}}),
            (MemoryType.VECTOR_DATABASE, MemoryType.KEY_VALUE_STORE),
        ),
        MemoryTool(
            "get_working_memory",
            "Read your scratchpad for this conversation (notes, intermediate results, plans): one item by "
            "key, or every item and the reasoning steps so far when no key is given.",
            _object({"key": {"type": "string", "pattern": KEY_PATTERN,
                             "description": "The item's key; omit to read everything."}}),
            (MemoryType.WORKING_MEMORY,),
        ),
        MemoryTool(
            "set_working_memory",
            "Write a note to your scratchpad for this conversation under a short key (it replaces that key's "
            "note). Use it for intermediate results and plans, not for facts about the user.",
            _object({"key": {"type": "string", "pattern": KEY_PATTERN,
                             "description": "Short identifier: letters, digits, '_', '.', '-' (max 64)."},
                     "value": {"anyOf": [{"type": "string", "maxLength": MAX_FACT_CHARS}, {"type": "number"},
                                         {"type": "boolean"}], "description": "The note."},
                     "importance": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                                    "description": "0-1: important notes outlive others when space runs out."},
                     "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": 604800,
                                     "description": "Forget the note after this many seconds (optional)."}},
                    ["key", "value"]),
            (MemoryType.WORKING_MEMORY,),
        ),
    )
}


def memory_tools(
    format: ToolFormat = "openai",
    include: Sequence[str] | None = None,
    *,
    orchestrator: MemoryOrchestrator | None = None,
) -> list[dict[str, Any]]:
    """Tool definitions in ``format`` for the tools named in ``include`` (default: all).

    With ``orchestrator``, tools whose tiers it does not enable are left out (``forget_memory`` needs one
    of its two tiers).
    """
    if format not in FORMATS:
        raise ValidationError(f"'format' must be one of {', '.join(FORMATS)}; got {format!r}", field="format")
    if isinstance(include, str):
        include = [include]
    names = list(TOOLS) if include is None else list(include)
    for name in names:
        if name not in TOOLS:
            raise ValidationError(f"unknown tool {name!r} in 'include'; available: {', '.join(TOOLS)}", field="include")
    if orchestrator is not None:
        enabled = set(orchestrator.memories)
        names = [n for n in names if enabled.intersection(TOOLS[n].tiers)]
    return [TOOLS[n].schema(format) for n in names]


# --- parsing a tool call ------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCall:
    """A tool call, whatever its wire shape: its id, name, arguments and the format it came in."""

    id: str | None
    name: str
    arguments: dict[str, Any]
    format: ToolFormat


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _arguments(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str | bytes | bytearray):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ValidationError(f"the tool call's arguments are not valid JSON: {exc}", field="arguments") from None
    if not isinstance(raw, Mapping):
        raise ValidationError(f"the tool call's arguments must be a JSON object, got {type(raw).__name__}",
                              field="arguments")
    return dict(raw)


def parse_tool_call(tool_call: Any) -> ParsedCall:
    """Read an OpenAI tool call, a Responses ``function_call`` item or an Anthropic ``tool_use`` block."""
    kind = _get(tool_call, "type")
    function = _get(tool_call, "function")
    if function is not None:  # OpenAI Chat Completions: {"id", "type": "function", "function": {name, arguments}}
        name, raw, call_id, fmt = _get(function, "name"), _get(function, "arguments"), _get(tool_call, "id"), "openai"
    elif kind == "tool_use" or (kind is None and _get(tool_call, "input") is not None):  # Anthropic
        name, raw, call_id, fmt = _get(tool_call, "name"), _get(tool_call, "input"), _get(tool_call, "id"), "anthropic"
    elif kind == "function_call":  # OpenAI Responses API
        name, raw, fmt = _get(tool_call, "name"), _get(tool_call, "arguments"), "openai_responses"
        call_id = _get(tool_call, "call_id") or _get(tool_call, "id")
    elif _get(tool_call, "name") is not None:  # a bare {"name", "arguments"}
        name, raw, call_id, fmt = _get(tool_call, "name"), _get(tool_call, "arguments"), _get(tool_call, "id"), "openai"
    else:
        raise ValidationError(
            "not a tool call: expected an OpenAI tool call (function.name + arguments), a Responses "
            "function_call item or an Anthropic tool_use block", field="tool_call")
    if not isinstance(name, str) or not name:
        raise ValidationError("the tool call has no function name", field="name")
    return ParsedCall(str(call_id) if call_id is not None else None, name, _arguments(raw), fmt)  # type: ignore[arg-type]


# --- validating arguments -------------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list, tuple),
    "object": (Mapping,),
}


def _check(value: Any, schema: Mapping[str, Any], field: str) -> Any:
    """``value`` checked (and normalised) against a JSON-schema subset; ValidationError naming ``field``."""
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            try:
                return _check(value, option, field)
            except ValidationError:
                continue
        kinds = " or ".join(o.get("type", "?") for o in schema["anyOf"])
        raise ValidationError(f"'{field}' must be {kinds}, got {type(value).__name__}", field=field)
    kind = schema.get("type")
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
        if not ok:
            raise ValidationError(f"'{field}' must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}, "
                                  f"got {type(value).__name__}", field=field)
    if "enum" in schema and value not in schema["enum"]:
        raise ValidationError(f"'{field}' must be one of {', '.join(map(str, schema['enum']))}; got {value!r}",
                              field=field)
    if isinstance(value, str):
        if not value.strip() and schema.get("minLength", 0) > 0:
            raise ValidationError(f"'{field}' must not be empty", field=field)
        if len(value) > schema.get("maxLength", len(value)):
            raise ValidationError(f"'{field}' is {len(value)} characters; the limit is {schema['maxLength']}",
                                  field=field)
        if "pattern" in schema and not re.match(schema["pattern"], value):
            raise ValidationError(f"'{field}' must match {schema['pattern']}; got {value!r}", field=field)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ValidationError(f"'{field}' must be >= {schema['minimum']}; got {value}", field=field)
        if "maximum" in schema and value > schema["maximum"]:
            raise ValidationError(f"'{field}' must be <= {schema['maximum']}; got {value}", field=field)
    if kind == "array":
        if len(value) > schema.get("maxItems", len(value)):
            raise ValidationError(f"'{field}' has {len(value)} items; the limit is {schema['maxItems']}", field=field)
        return [_check(v, schema.get("items", {}), f"{field}[{i}]") for i, v in enumerate(value)]
    return value


def validate_arguments(tool: MemoryTool, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments checked against ``tool``'s schema, defaults filled; ValidationError naming the argument."""
    props: Mapping[str, Any] = tool.parameters["properties"]
    for name in arguments:
        if name not in props:
            allowed = ", ".join(props) or "none"
            raise ValidationError(f"{tool.name}: unknown argument {name!r}; allowed: {allowed}", field=name)
    out: dict[str, Any] = {}
    for name in tool.parameters.get("required", []):
        if arguments.get(name) is None:
            raise ValidationError(f"{tool.name}: '{name}' is required", field=name)
    for name, schema in props.items():
        value = arguments.get(name)
        if value is None:
            if "default" in schema:
                out[name] = schema["default"]
            continue
        try:
            out[name] = _check(value, schema, name)
        except ValidationError as exc:
            raise ValidationError(f"{tool.name}: {exc.message}", field=exc.field) from None
    return out


# --- running a tool ---------------------------------------------------------------------------------


_T = TypeVar("_T", bound=BaseMemory)


def _tier(orchestrator: MemoryOrchestrator, memory_type: MemoryType, cls: type[_T], tool: str) -> _T:
    """The orchestrator's ``memory_type`` tier, or ConfigError naming the tool that needs it."""
    tier = orchestrator.memories.get(memory_type)
    if not isinstance(tier, cls):
        raise ConfigError(
            f"{tool} needs the {memory_type.value} tier, which this orchestrator does not enable",
            field="enabled_memories",
        )
    return tier


def _vector(orchestrator: MemoryOrchestrator, tool: str) -> VectorDatabaseMemory:
    return _tier(orchestrator, MemoryType.VECTOR_DATABASE, VectorDatabaseMemory, tool)


def _kv(orchestrator: MemoryOrchestrator, tool: str) -> KeyValueStoreMemory:
    return _tier(orchestrator, MemoryType.KEY_VALUE_STORE, KeyValueStoreMemory, tool)


def _working(orchestrator: MemoryOrchestrator, tool: str) -> WorkingMemory:
    return _tier(orchestrator, MemoryType.WORKING_MEMORY, WorkingMemory, tool)


def _session(session_id: str | None, tool: str) -> str:
    if not session_id:
        raise ValidationError(f"{tool}: the scratchpad belongs to a session; pass session_id", field="session_id")
    return session_id


def _hit(r: Any, *, with_session: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "content": r.content,
        "similarity": round(float(r.similarity), 4) if r.similarity is not None else None,
        "created_at": r.created_at.isoformat() if r.created_at else None,
    }
    topics = (r.metadata or {}).get("topics")
    if topics:
        out["topics"] = topics
    if with_session:
        out["session_id"] = r.session_id
    return out


async def _run(
    orchestrator: MemoryOrchestrator, name: str, args: dict[str, Any], user_id: str, session_id: str | None
) -> dict[str, Any]:
    if name == "search_memory":
        hits = await _vector(orchestrator, name).search(args["query"], user_id=user_id, k=args["limit"])
        return {"memories": [_hit(h) for h in hits], "count": len(hits)}
    if name == "remember":
        metadata: dict[str, Any] = {"source": REMEMBER_SOURCE}
        if args.get("topics"):
            metadata["topics"] = args["topics"]
        ref = await _vector(orchestrator, name).store(
            {"content": args["content"], "user_id": user_id, "session_id": session_id, "metadata": metadata})
        return {"id": ref.id, "stored": True, "already_known": not ref.created}
    if name == "recall_conversation":
        this_session = args["scope"] == "this_session"
        if this_session and not session_id:
            raise ValidationError("recall_conversation: scope 'this_session' needs a session", field="scope")
        hits = await _vector(orchestrator, name).search(
            args["query"], user_id=user_id, k=args["limit"], filters={"source": "conversation"},
            session_id=session_id if this_session else None)
        return {"messages": [_hit(h, with_session=True) for h in hits], "count": len(hits)}
    if name == "get_user_profile":
        kv = _kv(orchestrator, name)
        if args.get("key"):
            missing = object()
            value = await kv.get(args["key"], missing, user_id=user_id)
            found = value is not missing
            return {"key": args["key"], "found": found, "value": jsonable(value) if found else None}
        return {"preferences": jsonable(await kv.list(user_id=user_id))}
    if name == "set_preference":
        ref = await _kv(orchestrator, name).set(args["key"], args["value"], user_id=user_id)
        return {"key": args["key"], "value": args["value"], "stored": True, "replaced": not ref.created}
    if name == "edit_memory":
        if args.get("content") is None and args.get("topics") is None:
            raise ValidationError("edit_memory: give 'content' and/or 'topics'", field="content")
        memories = _vector(orchestrator, name)
        current = await memories.get(args["memory_id"], user_id=user_id)
        if current is None:
            raise NotFound(f"edit_memory: no memory {args['memory_id']} for this user", field="memory_id")
        new_meta: dict[str, Any] | None = None
        if args.get("topics") is not None:
            new_meta = {**(current.get("metadata") or {}), "topics": args["topics"]}
        record = await memories.update(args["memory_id"], args.get("content"), new_meta, user_id=user_id)
        return {"memory_id": args["memory_id"], "updated": True, "content": record.get("content"),
                "topics": (record.get("metadata") or {}).get("topics")}
    if name == "get_working_memory":
        scratch, namespace = _working(orchestrator, name), _session(session_id, name)
        if args.get("key"):
            entry = await scratch.get(namespace, args["key"], user_id=user_id)
            return {"key": args["key"], "found": entry is not None,
                    "value": jsonable(entry["content"]) if entry is not None else None}
        items = await scratch.items(namespace, user_id=user_id)
        chain = await scratch.get_reasoning_chain(namespace, user_id=user_id)
        return {"items": [{"key": i["key"], "value": jsonable(i["content"]), "importance": i["importance"]}
                          for i in items],
                "reasoning": [{"step": s["step"], "type": s["type"], "content": s["content"]} for s in chain]}
    if name == "set_working_memory":
        scratch, namespace = _working(orchestrator, name), _session(session_id, name)
        note: dict[str, Any] = {"namespace": namespace, "user_id": user_id, "key": args["key"],
                                "content": args["value"], "importance": args["importance"]}
        if args.get("ttl_seconds") is not None:
            note["ttl_seconds"] = args["ttl_seconds"]
        ref = await scratch.store(note)
        return {"key": args["key"], "stored": True, "replaced": not ref.created}
    if name == "forget_memory":
        given = [k for k in ("memory_id", "key") if args.get(k)]
        if len(given) != 1:
            raise ValidationError("forget_memory: give exactly one of 'memory_id' or 'key'", field="memory_id")
        if given[0] == "memory_id":
            deleted = await _vector(orchestrator, name).delete(args["memory_id"], user_id=user_id)
            return {"memory_id": args["memory_id"], "deleted": deleted}
        deleted = await _kv(orchestrator, name).delete(args["key"], user_id=user_id)
        return {"key": args["key"], "deleted": deleted}
    raise ValidationError(f"unknown tool {name!r}; available: {', '.join(TOOLS)}", field="name")  # pragma: no cover


async def run_tool_call(
    orchestrator: MemoryOrchestrator, tool_call: Any, *, user_id: str, session_id: str | None = None
) -> dict[str, Any]:
    """Validate and run one memory tool call for ``user_id``; return its JSON-serialisable result.

    Raises ValidationError (naming the argument) for an unknown tool or bad arguments, ConfigError when
    the tool's tier is not enabled, NotFound/BackendUnavailable from the tier.
    """
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValidationError("'user_id' is required and must be a non-empty string", field="user_id")
    call = parse_tool_call(tool_call)
    tool = TOOLS.get(call.name)
    if tool is None:
        raise ValidationError(f"unknown tool {call.name!r}; available: {', '.join(TOOLS)}", field="name")
    args = validate_arguments(tool, call.arguments)
    await orchestrator.initialize()  # tiers must use the orchestrator's shared stores
    return await _run(orchestrator, call.name, args, user_id, session_id)


def format_result(result: Any) -> str:
    """A tool result as the compact JSON text the model reads."""
    return result if isinstance(result, str) else json.dumps(jsonable(result), ensure_ascii=False)


async def resolve_tool_call(
    orchestrator: MemoryOrchestrator, tool_call: Any, *, user_id: str, session_id: str | None = None
) -> dict[str, Any]:
    """Run one memory tool call and never raise for a memory error: an envelope the application can branch on.

    ``{"success": True, "function_name", "tool_call_id", "result", "formatted_response"}`` or
    ``{"success": False, "function_name", "tool_call_id", "error", "field", "code", "formatted_response"}``
    (``formatted_response`` is the text to send back to the model either way, so it can correct itself).
    """
    try:
        call = parse_tool_call(tool_call)
    except MemoryError as exc:
        call = None
        failure: MemoryError | None = exc
    else:
        failure = None
    name = call.name if call is not None else None
    call_id = call.id if call is not None else None
    if failure is None:
        try:
            result = await run_tool_call(orchestrator, tool_call, user_id=user_id, session_id=session_id)
        except MemoryError as exc:
            failure = exc
        else:
            return {"success": True, "function_name": name, "tool_call_id": call_id, "result": result,
                    "formatted_response": format_result(result)}
    error = {"error": failure.message, "field": failure.field, "code": failure.code}
    return {"success": False, "function_name": name, "tool_call_id": call_id, **error,
            "formatted_response": format_result(error)}


def tool_result_message(tool_call: Any, result: Any, *, is_error: bool = False) -> dict[str, Any]:
    """The message carrying ``result`` back to the model, in the tool call's own format.

    OpenAI Chat: ``{"role": "tool", "tool_call_id", "content"}``; Responses: a ``function_call_output``
    item; Anthropic: a ``tool_result`` content block (put it in the next user message's content).
    """
    call = parse_tool_call(tool_call)
    content = format_result(result)
    if call.format == "anthropic":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": content}
        if is_error:
            block["is_error"] = True
        return block
    if call.format == "openai_responses":
        return {"type": "function_call_output", "call_id": call.id, "output": content}
    return {"role": "tool", "tool_call_id": call.id, "content": content}


async def resolve_tool_calls(
    orchestrator: MemoryOrchestrator, tool_calls: Sequence[Any], *, user_id: str, session_id: str | None = None
) -> list[dict[str, Any]]:
    """Run every tool call in order; return the result messages (memory errors become error results)."""
    out: list[dict[str, Any]] = []
    for call in tool_calls:
        outcome = await resolve_tool_call(orchestrator, call, user_id=user_id, session_id=session_id)
        out.append(tool_result_message(call, outcome["formatted_response"], is_error=not outcome["success"]))
    return out


# --- memory_prompt ------------------------------------------------------------------------------------


def _merge_system(system_prompt: str | None, memory: str) -> str:
    return "\n\n".join(p for p in (system_prompt, memory) if p)


def render_prompt(
    ctx: ComprehensiveContext | None, query: str, *, format: PromptFormat = "openai",
    system_prompt: str | None = None,
) -> Any:
    """Ready-to-send request parts: the memory context (None: no memory), the system prompt and the query."""
    if format == "anthropic":
        system = _merge_system(system_prompt, ctx.anthropic_system if ctx else "")
        messages = [dict(m) for m in ctx.anthropic_messages] if ctx else []
        if messages and messages[-1]["role"] == "user":
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{query}"
        else:
            messages.append({"role": "user", "content": query})
        return {"system": system, "messages": messages}
    if format != "openai":
        raise ValidationError(f"'format' must be 'openai' or 'anthropic'; got {format!r}", field="format")
    messages = [dict(m) for m in ctx.messages] if ctx else []
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = _merge_system(system_prompt, messages[0]["content"])
    elif system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": query})
    return messages


def prompt_tokens(prompt: Any, tok: Tokenizer) -> int:
    """Tokens of a rendered prompt, counted as the composer counts its renderings."""
    if isinstance(prompt, Mapping):
        return tok.count(str(prompt.get("system") or "")) + tok.count_messages(list(prompt["messages"]))
    return tok.count_messages(list(prompt))


async def build_memory_prompt(
    orchestrator: MemoryOrchestrator,
    query: str,
    *,
    user_id: str,
    session_id: str | None = None,
    max_total_tokens: int | None = None,
    format: PromptFormat = "openai",
    model: str | None = None,
    system_prompt: str | None = None,
    tier_timeout_ms: float | None = None,
    memory_types: list[MemoryType] | None = None,
    filters: Mapping[str, Any] | None = None,
) -> tuple[Any, ComprehensiveContext]:
    """:func:`memory_prompt` and the ``ComprehensiveContext`` it was built from."""
    if not isinstance(query, str) or not query.strip():
        raise ValidationError("'query' must be a non-empty string", field="query")
    config: MemoryConfig = orchestrator.config
    total = max_total_tokens if max_total_tokens is not None else config.max_total_tokens
    if isinstance(total, bool) or not isinstance(total, int) or total <= 0:
        raise ValidationError("'max_total_tokens' must be a positive integer", field="max_total_tokens")
    tok = get_tokenizer(model or config.tokenizer_model)
    bare = prompt_tokens(render_prompt(None, query, format=format, system_prompt=system_prompt), tok)
    budget = total - bare
    for _ in range(4):
        if budget <= 0:
            raise ValidationError(
                f"'max_total_tokens' ({total}) leaves no room for memory: the query and system prompt alone "
                f"take {bare} tokens", field="max_total_tokens")
        request = ContextRequest(query=query, session_id=session_id, user_id=user_id, max_total_tokens=budget,
                                 model=model, memory_types=memory_types, filters=dict(filters or {}))
        ctx = await orchestrator.get_comprehensive_context(request, tier_timeout_ms=tier_timeout_ms)
        prompt = render_prompt(ctx, query, format=format, system_prompt=system_prompt)
        used = prompt_tokens(prompt, tok)
        if used <= total:
            return prompt, ctx
        budget -= used - total  # joining the parts cost a few tokens more than their sum: shrink and retry
    raise ValidationError(f"could not fit the prompt within max_total_tokens={total}",
                          field="max_total_tokens")  # pragma: no cover - each retry shrinks by the excess


#: Keys of ``memory_prompt(session=...)`` and the parameter each stands for.
SESSION_KEYS = {"session_id": "session_id", "user_id": "user_id", "model_name": "model",
                "context_window_max": "max_total_tokens"}
#: Tiers ``long_term_search=False`` leaves out (the conversation and working memory stay).
LONG_TERM_TIERS = (MemoryType.VECTOR_DATABASE, MemoryType.ENTITY_MEMORY, MemoryType.KEY_VALUE_STORE)


def _long_term(orchestrator: MemoryOrchestrator, long_term_search: Any) -> tuple[list[MemoryType] | None, Any]:
    """(memory types, filters) for ``long_term_search``: True, False or ``{"filters": {...}}``."""
    if long_term_search is True or long_term_search is None:
        return None, None
    if long_term_search is False:
        return [mt for mt in orchestrator.memories if mt not in LONG_TERM_TIERS], None
    if isinstance(long_term_search, Mapping):
        unknown = set(long_term_search) - {"filters"}
        if unknown:
            bad = sorted(unknown)[0]
            raise ValidationError(f"unknown long_term_search key {bad!r}; allowed: filters",
                                  field=f"long_term_search.{bad}")
        filters = long_term_search.get("filters")
        if filters is not None and not isinstance(filters, Mapping):
            raise ValidationError("'long_term_search.filters' must be a mapping", field="long_term_search.filters")
        return None, filters
    raise ValidationError("'long_term_search' must be True, False or {'filters': {...}}", field="long_term_search")


async def memory_prompt(
    orchestrator: MemoryOrchestrator,
    query: str,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    session: Mapping[str, Any] | None = None,
    long_term_search: bool | Mapping[str, Any] = True,
    max_total_tokens: int | None = None,
    format: PromptFormat = "openai",
    model: str | None = None,
    system_prompt: str | None = None,
) -> Any:
    """Ready-to-send messages with memory for ``query``, all within ``max_total_tokens``.

    ``format="openai"``: a message list (system prompt + memory in the system message, the recent
    conversation, then the query as the last user message). ``format="anthropic"``: ``{"system",
    "messages"}``. The budget covers everything, the query and system prompt included.
    ``session={"session_id", "user_id", "model_name", "context_window_max"}`` may replace the keyword
    arguments; ``long_term_search=False`` uses only the conversation (and working memory),
    ``{"filters": {...}}`` narrows the long-term search by metadata.
    """
    params: dict[str, Any] = {"user_id": user_id, "session_id": session_id, "model": model,
                              "max_total_tokens": max_total_tokens}
    if session is not None:
        if not isinstance(session, Mapping):
            raise ValidationError("'session' must be a mapping", field="session")
        for key, value in session.items():
            if key not in SESSION_KEYS:
                raise ValidationError(f"unknown session key {key!r}; allowed: {', '.join(SESSION_KEYS)}",
                                      field=f"session.{key}")
            if params[SESSION_KEYS[key]] is None:
                params[SESSION_KEYS[key]] = value
    if not isinstance(params["user_id"], str) or not params["user_id"].strip():
        raise ValidationError("'user_id' is required (or session['user_id'])", field="user_id")
    memory_types, filters = _long_term(orchestrator, long_term_search)
    prompt, _ = await build_memory_prompt(
        orchestrator, query, user_id=params["user_id"], session_id=params["session_id"],
        max_total_tokens=params["max_total_tokens"], format=format, model=params["model"],
        system_prompt=system_prompt, memory_types=memory_types, filters=filters)
    return prompt


__all__ = [
    "FORMATS",
    "TOOLS",
    "MemoryTool",
    "ParsedCall",
    "build_memory_prompt",
    "format_result",
    "memory_prompt",
    "memory_tools",
    "parse_tool_call",
    "resolve_tool_call",
    "resolve_tool_calls",
    "run_tool_call",
    "tool_result_message",
    "validate_arguments",
]
