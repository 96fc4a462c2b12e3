"""``MemoryOrchestrator``: every enabled tier behind one call per turn.

Reading a turn (``get_comprehensive_context``): the enabled tiers are queried concurrently
(``parallel_queries``; one after another when off), each under its own deadline (``tier_timeout_ms``,
overridable per request). A tier that raises or misses its deadline is listed in ``ctx.degraded``
and the turn goes on (fail-open). With ``cross_memory_links``, entities named in the query steer
the vector search through ``filters["entities"]``; only the vector search waits for them, and at
most a fraction of its deadline. When the entity tier is queried too, the names come from its own
answer (``extra["matched_entities"]``, one SQL statement for both); otherwise from
``EntityMemory.find_entities_in_text``, run concurrently with the other tiers. The composer then
splits the budget by weight, reflows what a section leaves unused, dedupes facts repeated across
sections and renders (see ``composer``).

When both conversation tiers are enabled, the summary tier supplies the "summary" section and the
buffer supplies "recent_conversation": the summary tier is then asked for its summary only
(``get_summary_context``), not for recent messages that would be discarded.

Writing a turn (``store_turn``): the user and assistant messages are validated first (nothing is
written when either is invalid), then committed in one write to the conversation tier (the summary
tier when enabled — it writes through its buffer and schedules summarisation — else the buffer).
Embedding the user message into the vector tier and entity extraction are submitted to the shared
background worker; ``flush()`` waits for them, ``close()`` drains them.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from .base import BaseMemory
from .catch_up import schedule_catch_up
from .composer import CONVERSATION, SECTION_ORDER, TokenCounter, compose, resolve_weights
from .config import MemoryConfig
from .context import ComprehensiveContext
from .errors import BackendUnavailable, ConfigError, ValidationError
from .explain import CompositionTrace
from .indexing import index_turn
from .providers.interfaces import USER_ENTITY
from .stores import Stores
from .tokens import get_tokenizer
from .types import ContextRequest, HealthState, HealthStatus, MemoryContext, MemoryType, Message, Stopwatch

if TYPE_CHECKING:
    from .turns import MemoryTurn

log = structlog.get_logger("memory_implementations.orchestrator")

#: Where each tier's class lives (imported on first use).
TIER_CLASSES: dict[MemoryType, tuple[str, str]] = {
    MemoryType.CONVERSATION_BUFFER: ("memory_implementations.memories.buffer", "ConversationBufferMemory"),
    MemoryType.CONVERSATION_SUMMARY: ("memory_implementations.memories.summary", "ConversationSummaryMemory"),
    MemoryType.VECTOR_DATABASE: ("memory_implementations.memories.vector", "VectorDatabaseMemory"),
    MemoryType.WORKING_MEMORY: ("memory_implementations.memories.working", "WorkingMemory"),
    MemoryType.KEY_VALUE_STORE: ("memory_implementations.memories.kv", "KeyValueStoreMemory"),
    MemoryType.ENTITY_MEMORY: ("memory_implementations.memories.entity", "EntityMemory"),
}
#: The sections each tier may supply.
TIER_SECTIONS: dict[MemoryType, tuple[str, ...]] = {
    MemoryType.CONVERSATION_BUFFER: (CONVERSATION,),
    MemoryType.CONVERSATION_SUMMARY: ("summary", CONVERSATION),
    MemoryType.VECTOR_DATABASE: ("vector_search",),
    MemoryType.WORKING_MEMORY: ("working_memory",),
    MemoryType.KEY_VALUE_STORE: ("key_value",),
    MemoryType.ENTITY_MEMORY: ("entities",),
}
#: The section an item without a ``section`` key belongs to.
DEFAULT_SECTION: dict[MemoryType, str] = {
    MemoryType.CONVERSATION_BUFFER: CONVERSATION,
    MemoryType.CONVERSATION_SUMMARY: "summary",
    MemoryType.VECTOR_DATABASE: "vector_search",
    MemoryType.WORKING_MEMORY: "working_memory",
    MemoryType.KEY_VALUE_STORE: "key_value",
    MemoryType.ENTITY_MEMORY: "entities",
}
CONVERSATION_TIERS = (MemoryType.CONVERSATION_BUFFER, MemoryType.CONVERSATION_SUMMARY)
SESSION_TIERS = CONVERSATION_TIERS
#: Share of the vector tier's deadline it may spend waiting for entity steering.
STEERING_SHARE = 0.4
HEALTH_TIMEOUT_S = 5.0
# a first model load from a cold disk takes seconds; a dead backend must not hold start-up long
WARM_UP_TIMEOUT_S = 15.0
WARM_UP_USER = "memory-warm-up"  # reads only: nothing is stored for it
#: The long-term room estimated per (user, session) is scaled by ROOM_MARGIN and padded by ROOM_SLACK tokens.
ROOM_MARGIN = 1.25
ROOM_SLACK = 100
ROOM_CACHE_SIZE = 10_000
#: A question about the speaker themself.
FIRST_PERSON = re.compile(r"\b(?:i|me|my|mine|myself|i'm|i've|i'd|i'll|we|our|us)\b", re.IGNORECASE)


def _tier_class(memory_type: MemoryType) -> type[BaseMemory]:
    module_name, class_name = TIER_CLASSES[memory_type]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"memory type {memory_type.value!r} is not available: {exc}", field="enabled_memories"
        ) from exc
    cls = getattr(module, class_name)
    assert isinstance(cls, type) and issubclass(cls, BaseMemory)
    return cls


def relevant_entities(
    entities: list[dict[str, Any]],
    items_by_section: Mapping[str, list[dict[str, Any]]],
    *,
    query: str = "",
    top: int = 12,
) -> list[dict[str, Any]]:
    """The entity items that earn their place: named in the query, or named in what was retrieved for it.

    "Retrieved" is the ``top`` best-scored long-term memories and every item of the other sections.
    The speaker's own entity (``User``) is named by a question in the first person ("where do I live?").
    A retrieved entity that is a bare name (no attribute, no relationship) adds nothing and is left out.
    An entity is never listed just because it is important to the user: if neither the question nor
    what answers it mentions it, it costs tokens and tells the model nothing about this turn.
    """
    texts: list[str] = []
    for section, items in items_by_section.items():
        if section == "entities":
            continue
        chosen = items
        if section == "vector_search":
            chosen = sorted(items, key=lambda i: -float(i.get("score") or 0.0))[:top]
        texts += [str(item.get("content") or "") for item in chosen]
    blob = " ".join(texts).casefold()
    first_person = FIRST_PERSON.search(query) is not None
    kept: list[dict[str, Any]] = []
    for item in entities:
        entity = item.get("entity")
        if item.get("matched") or (first_person and isinstance(entity, Mapping) and entity.get("name") == USER_ENTITY):
            kept.append(item)
            continue
        if not isinstance(entity, Mapping) or not (entity.get("attributes") or entity.get("relationships")):
            continue  # a bare name says nothing the retrieved memories do not
        names = [entity.get("name"), *entity.get("aliases", [])]
        if any(isinstance(n, str) and _names_in(n, blob) for n in names):
            kept.append(item)
    return kept


_WORD = re.compile(r"\w+")


def _names_in(name: str, blob: str) -> bool:
    """Whether ``name``'s words occur in ``blob`` (case-folded) as whole words, in order, separated by
    anything that is not a word character ("New York" is in "new-york", "Ann" is not in "Annual")."""
    words = _WORD.findall(name.casefold())
    if not words or words[0] not in blob:  # the cheap test first: most names are not there at all
        return False
    pattern = r"(?<!\w)" + r"\W+".join(map(re.escape, words)) + r"(?!\w)"
    return re.search(pattern, blob) is not None


def _aware(value: datetime | str | None) -> datetime | None:
    """``created_at`` as an aware datetime (a naive one is taken as UTC); ValidationError when unreadable."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(f"'created_at' is not an ISO timestamp: {value!r}", field="created_at") from None
    if not isinstance(value, datetime):
        raise ValidationError("'created_at' must be a datetime or an ISO string", field="created_at")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _reason(exc: BaseException, timeout_ms: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout: no answer within {timeout_ms:g} ms"
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class MemoryOrchestrator:
    """Composes token-budgeted context from every enabled tier, stores turns, reports health.

    ``MemoryOrchestrator(config)`` with the seed's dict (``enabled_memories`` etc.) or a
    ``MemoryConfig``; ``stores=`` shares existing connections (else ``initialize`` opens one
    ``Stores`` for all tiers and ``close`` closes it); ``memories=`` replaces a tier by an instance or
    a ``BaseMemory`` subclass (types given there are enabled); ``required_memories=`` names the
    tiers whose failure makes the whole orchestrator unhealthy (default: the conversation tiers).
    """

    def __init__(
        self,
        config: Mapping[str, Any] | MemoryConfig | None = None,
        *,
        stores: Stores | None = None,
        memories: Mapping[MemoryType, BaseMemory | type[BaseMemory]] | None = None,
        required_memories: Iterable[MemoryType | str] | None = None,
    ) -> None:
        """Validate the configuration and build (not connect) the tiers."""
        self.config = MemoryConfig.from_any(config)
        overrides = {MemoryType(k): v for k, v in (memories or {}).items()}
        self.enabled: list[MemoryType] = list(dict.fromkeys([*self.config.enabled_memories, *overrides]))
        if not self.enabled:
            raise ConfigError("enabled_memories is empty: enable at least one memory type", field="enabled_memories")
        required = required_memories
        if required is None:
            required = self.config.required_memories
        if required is None:
            required = [m for m in CONVERSATION_TIERS if m in self.enabled]
        self.required: set[MemoryType] = {MemoryType(m) for m in required}
        unknown = self.required - set(self.enabled)
        if unknown:
            raise ConfigError(
                f"required_memories names tiers that are not enabled: {sorted(m.value for m in unknown)}",
                field="required_memories",
            )
        self._stores = stores
        self._owns_stores = stores is None
        self.memories: dict[MemoryType, BaseMemory] = {}
        for mt in self.enabled:
            spec = overrides.get(mt)
            if isinstance(spec, BaseMemory):
                tier = spec
            else:
                cls = spec if spec is not None else _tier_class(mt)
                tier = cls(self.config, stores=stores)
            self.memories[mt] = tier
        self.init_errors: dict[str, str] = {}
        self._counters: dict[str, TokenCounter] = {}
        self._others_demand: OrderedDict[tuple[str, str | None], int] = OrderedDict()
        self._initialized = False
        self._closed = False
        self._init_lock = asyncio.Lock()

    # lifecycle -------------------------------------------------------------------------------
    @property
    def stores(self) -> Stores:
        """The shared connections (after ``initialize``)."""
        if self._stores is None:
            raise BackendUnavailable("MemoryOrchestrator is not initialized: await orchestrator.initialize() first")
        return self._stores

    def _embedding_dim(self) -> int | None:
        # only a tier that embeds decides the dimension (it already honours config.embedding_dim)
        for tier in self.memories.values():
            dim = tier.embedding_dim()
            if dim:
                return dim
        return None

    async def initialize(self) -> None:
        """Open one ``Stores`` (unless given), hand it to every tier and initialize them concurrently; idempotent.

        A required tier that fails raises; an optional one is logged, kept in ``init_errors`` and
        retried by its own lazy initialisation on later calls (reported degraded until it works).
        """
        if self._initialized:
            return
        async with self._init_lock:
            if self._initialized:
                return
            if self._stores is None:
                self._stores = await Stores.open(self.config, embedding_dim=self._embedding_dim())
                self._owns_stores = True
            for tier in self.memories.values():
                tier.attach_stores(self._stores)
            types = list(self.memories)
            results = await asyncio.gather(*(self.memories[mt].initialize() for mt in types), return_exceptions=True)
            for mt, res in zip(types, results, strict=True):
                if not isinstance(res, BaseException):
                    continue
                if mt in self.required or isinstance(res, ConfigError) or not isinstance(res, Exception):
                    if self._owns_stores:
                        await self._stores.close()
                        self._stores = None
                    raise res
                self.init_errors[mt.value] = _reason(res, 0)
                log.warning("tier_init_failed", tier=mt.value, error=str(res))
            self._initialized = True
            self._closed = False
            if self.config.warm_up:
                await self.warm_up()
            schedule_catch_up(self._stores, self.memories.get(MemoryType.VECTOR_DATABASE))  # flush() waits for it

    async def warm_up(self, *, timeout_s: float = WARM_UP_TIMEOUT_S) -> dict[str, str]:
        """Load what a turn needs (embedding model, tokenizer, a connection and a read per tier) ahead of the first.

        ``initialize()`` runs it unless ``warm_up=False``: without it the first turn of a process pays the
        model load and misses ``tier_timeout_ms``. One read-only context read for a reserved user, under a
        ``timeout_s`` deadline per tier. Returns the tiers that could not warm (and why); never raises.
        """
        watch = Stopwatch()
        failed: dict[str, str] = {}
        try:
            get_tokenizer(self.config.tokenizer_model).count("warm up")
            vector = self.memories.get(MemoryType.VECTOR_DATABASE)
            model = getattr(getattr(vector, "embedder", None), "backend", None) if vector is not None else None
            if model is not None and getattr(model, "kind", "") != "remote" and hasattr(model, "embed_batch"):
                # the model itself, past the embedding cache: the first turn's question will not be cached
                await asyncio.wait_for(model.embed_batch(["warm up"]), timeout_s)
            req = ContextRequest(query="What do you remember about me?", user_id=WARM_UP_USER, session_id=WARM_UP_USER)
            ctx = await asyncio.wait_for(
                self.get_comprehensive_context(req, tier_timeout_ms=timeout_s * 1000), timeout_s + 1
            )
            failed.update(ctx.degraded)
        except Exception as exc:  # warming is an optimisation: the first turn loads what is missing
            failed["orchestrator"] = _reason(exc, timeout_s * 1000)
        finally:
            self._others_demand.pop((WARM_UP_USER, WARM_UP_USER), None)
        try:  # the read left cache markers for the reserved user: leave nothing behind
            await self._sweep_redis(self.stores, WARM_UP_USER)
        except Exception as exc:
            failed["redis"] = _reason(exc, 0)
        if failed:
            log.warning("warm_up_incomplete", degraded=failed, ms=round(watch.ms, 1))
        else:
            log.debug("warm_up_done", ms=round(watch.ms, 1))
        return failed

    async def _ensure(self) -> Stores:
        if not self._initialized:
            await self.initialize()
        return self.stores

    async def close(self) -> None:
        """Drain background work, close the tiers, and close the stores if this orchestrator opened them."""
        if self._stores is None:
            return
        try:
            await self._stores.worker.flush(timeout=30)
        except Exception as exc:  # a stuck job must not keep connections open
            log.warning("background_drain_failed", error=str(exc))
        for tier in self.memories.values():
            try:
                await tier.close()
            except Exception as exc:
                log.warning("tier_close_failed", tier=tier.memory_type.value, error=str(exc))
        if self._owns_stores:
            await self._stores.close()
            self._stores = None
        self._initialized = False
        self._closed = True

    async def __aenter__(self) -> MemoryOrchestrator:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # attaching memory to an LLM node -----------------------------------------------------------
    def turn(self, session_id: str, user_id: str, query: str, **options: Any) -> MemoryTurn:
        """``async with orchestrator.turn(session_id, user_id, query) as t: ... t.record(reply)`` (fail-open).

        ``t.messages`` holds memory plus the query, ready to send; on exit the exchange is stored in the
        background (see :mod:`memory_implementations.turns`). Options: ``timeout_ms``,
        ``max_total_tokens``, ``system_prompt``, ``metadata``, ``store``.
        """
        from .turns import MemoryTurn

        return MemoryTurn(self, session_id, user_id, query, **options)

    async def resolve_tool_call(self, tool_call: Any, *, user_id: str, session_id: str | None = None) -> dict[str, Any]:
        """Run one memory tool call (OpenAI or Anthropic shape): ``{"success", "formatted_response" | "error"}``."""
        from .integrations.tools import resolve_tool_call

        return await resolve_tool_call(self, tool_call, user_id=user_id, session_id=session_id)

    def memory_tools(self, format: str = "openai") -> list[dict[str, Any]]:
        """The memory tool schemas this orchestrator can run, in ``format`` (openai, anthropic, openai_responses)."""
        from .integrations.tools import memory_tools

        return memory_tools(format, orchestrator=self)  # type: ignore[arg-type]

    async def memory_prompt(self, query: str, **options: Any) -> Any:
        """Ready-to-send messages with memory for ``query`` (see ``integrations.tools.memory_prompt``)."""
        from .integrations.tools import memory_prompt

        return await memory_prompt(self, query, **options)

    # reading a turn --------------------------------------------------------------------------
    def token_counter(self, model: str | None = None) -> TokenCounter:
        """The cached token counter of ``model`` (default: ``tokenizer_model``)."""
        name = model or self.config.tokenizer_model
        counter = self._counters.get(name)
        if counter is None:
            if len(self._counters) >= 16:
                self._counters.pop(next(iter(self._counters)))
            counter = self._counters[name] = TokenCounter(get_tokenizer(name))
        return counter

    def _active(self, req: ContextRequest) -> list[MemoryType]:
        wanted = self.enabled
        if req.memory_types:
            asked = {MemoryType(m) for m in req.memory_types}
            wanted = [m for m in self.enabled if m in asked]
        if not req.session_id:
            wanted = [m for m in wanted if m not in SESSION_TIERS]
        return wanted

    @staticmethod
    def conversation_owner(active: Iterable[MemoryType]) -> MemoryType | None:
        """The tier whose messages fill "recent_conversation": the buffer when enabled, else the summary."""
        present = set(active)
        for mt in CONVERSATION_TIERS:
            if mt in present:
                return mt
        return None

    async def get_comprehensive_context(
        self,
        request: ContextRequest | Mapping[str, Any] | str,
        *,
        tier_timeout_ms: float | None = None,
        explain: bool = False,
    ) -> ComprehensiveContext:
        """Query every enabled tier under its deadline, then budget, dedupe and render one context.

        ``explain=True`` adds ``ctx.explanation``: each section's allotment against its use, every
        candidate each tier offered with its score and its fate (kept, or left out for the budget, as
        a duplicate, or by the tier itself), tier latencies and degraded tiers (see ``explain``).
        """
        total = Stopwatch()
        req = ContextRequest.from_any(request)
        budget = req.max_total_tokens if req.max_total_tokens is not None else self.config.max_total_tokens
        if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
            raise ValidationError("'max_total_tokens' must be a positive integer", field="max_total_tokens")
        timeout_ms = self._timeout_ms(req, tier_timeout_ms)
        weights = resolve_weights(self.config.default_context_priority, req.weights)
        counter = self.token_counter(req.model)
        await self._ensure()

        active = self._active(req)
        tier_req = replace(req, max_total_tokens=budget, filters=dict(req.filters))
        tier_req.filters.pop("tier_timeout_ms", None)
        if explain:
            tier_req.filters["explain"] = True
        trace = CompositionTrace() if explain else None
        room_key = (req.user_id, req.session_id)
        long_term = self._long_term_budget(room_key, budget, active, weights)
        results, latency, degraded, names = await self._query_tiers(
            active, tier_req, budget, timeout_ms, long_term_budget=long_term
        )

        owner = self.conversation_owner(active)
        sections = [s for s in SECTION_ORDER if any(s in TIER_SECTIONS[mt] for mt in active)]
        items_by_section: dict[str, list[dict[str, Any]]] = {s: [] for s in sections}
        tiers_by_section: dict[str, list[str]] = {s: [] for s in sections}
        for mt, mctx in results.items():
            for item in mctx.items:
                section = item.get("section") or DEFAULT_SECTION[mt]
                if section == CONVERSATION and mt is not owner:
                    continue
                if section not in items_by_section:
                    continue
                items_by_section[section].append(item)
                if mt.value not in tiers_by_section[section]:
                    tiers_by_section[section].append(mt.value)
        if "entities" in items_by_section:
            offered = items_by_section["entities"]
            items_by_section["entities"] = relevant_entities(offered, items_by_section, query=req.query)
            if trace is not None:
                trace.record_entities(offered, items_by_section["entities"])
        watch = Stopwatch()
        ctx = compose(
            items_by_section,
            max_total_tokens=budget,
            counter=counter,
            weights=weights,
            sections=sections,
            trust_item_tokens=counter.model == self.config.tokenizer_model,
            tiers_by_section=tiers_by_section,
            trace=trace,
        )
        latency["compose"] = watch.ms
        self._remember_others(room_key, ctx)
        latency["total"] = total.ms
        ctx.query = req.query
        ctx.session_id = req.session_id
        ctx.user_id = req.user_id
        ctx.latency_ms = latency
        ctx.degraded = degraded
        ctx.entities = names
        if trace is not None:
            for mt in active:
                answer = results.get(mt)
                trace.record_tier(mt.value, latency_ms=round(latency.get(mt.value, 0.0), 3),
                                  degraded=degraded.get(mt.value), offered=len(answer.items) if answer else 0,
                                  **((answer.extra.get("explain") or {}) if answer else {}))
            ctx.explanation = trace.to_dict()
        if degraded:
            log.warning("context_degraded", degraded=degraded, user_id=req.user_id, session_id=req.session_id)
        return ctx

    def _timeout_ms(self, req: ContextRequest, override: float | None) -> float:
        value: Any = override
        if value is None:
            value = req.filters.get("tier_timeout_ms", self.config.tier_timeout_ms)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValidationError(f"'tier_timeout_ms' must be a number > 0, got {value!r}", field="tier_timeout_ms")
        return float(value)

    def _long_term_budget(
        self, key: tuple[str, str | None], budget: int, active: list[MemoryType], weights: Mapping[str, float]
    ) -> int:
        """The budget the vector tier sizes its candidates to: what the other sections will likely leave it.

        Estimated from what they asked for on this session's previous turn (their demand), never below
        the long-term section's own weighted share; with a margin. A new session: the whole budget.
        """
        others = self._others_demand.get(key)
        if others is None:
            return budget
        sections = {s for mt in active for s in TIER_SECTIONS[mt]}
        total_w = sum(max(0.0, weights.get(s, 0.0)) for s in sections) or 1.0
        share = budget * max(0.0, weights.get("vector_search", 0.0)) / total_w
        room = max(share, budget - others)
        return min(budget, int(room * ROOM_MARGIN) + ROOM_SLACK)

    def _remember_others(self, key: tuple[str, str | None], ctx: ComprehensiveContext) -> None:
        """Keep what the sections other than long-term memory asked for this turn (see ``_long_term_budget``)."""
        others = ctx.overhead_tokens + sum(s.demand for name, s in ctx.sections.items() if name != "vector_search")
        self._others_demand[key] = others
        self._others_demand.move_to_end(key)
        if len(self._others_demand) > ROOM_CACHE_SIZE:
            self._others_demand.popitem(last=False)

    async def _query_tiers(
        self,
        active: list[MemoryType],
        req: ContextRequest,
        budget: int,
        timeout_ms: float,
        *,
        long_term_budget: int | None = None,
    ) -> tuple[dict[MemoryType, MemoryContext], dict[str, float], dict[str, str], list[str]]:
        """Run the tiers (and entity steering); return their contexts, latencies, failures and steering names.

        ``long_term_budget`` is what the vector tier sizes its candidates to (default ``budget``).
        """
        vector_budget = long_term_budget if long_term_budget is not None else budget
        results: dict[MemoryType, MemoryContext] = {}
        latency: dict[str, float] = {}
        degraded: dict[str, str] = {}
        names: list[str] = [str(n) for n in (req.filters.get("entities") or []) if str(n).strip()]
        timeout = timeout_ms / 1000.0
        entity = self.memories.get(MemoryType.ENTITY_MEMORY)
        steer = (
            self.config.cross_memory_links
            and MemoryType.VECTOR_DATABASE in active
            and entity is not None
            and MemoryType.ENTITY_MEMORY in self.enabled
            and bool(req.query.strip())
            and "entities" not in req.filters
            and hasattr(entity, "find_entities_in_text")
        )
        # the entity tier's own read names the query's entities: reuse it instead of a second lookup
        shared = (
            steer
            and MemoryType.ENTITY_MEMORY in active
            and bool(getattr(entity, "reports_query_entities", False))
        )
        steer_task: asyncio.Future[list[str]] | None = None
        summary_only = (
            self.conversation_owner(active) is MemoryType.CONVERSATION_BUFFER
            and MemoryType.CONVERSATION_SUMMARY in active
        )

        async def find_names() -> list[str]:
            watch = Stopwatch()
            try:
                found = await asyncio.wait_for(
                    entity.find_entities_in_text(req.query, req.user_id),  # type: ignore[union-attr]
                    timeout,
                )
                out = [str(e["name"]) for e in found if isinstance(e, Mapping) and e.get("name")]
                return list(dict.fromkeys(out))
            except Exception as exc:
                log.info("entity_steering_failed", error=_reason(exc, timeout_ms))
                return []
            finally:
                latency["entity_steering"] = watch.ms

        def share_names(ctx: MemoryContext | None) -> None:
            """Resolve the steering future from the entity tier's answer (no names when it failed)."""
            if steer_task is None or steer_task.done():
                return
            found = ctx.extra.get("matched_entities") if ctx is not None else None
            names = [str(n) for n in (found or []) if str(n).strip()]
            steer_task.set_result(list(dict.fromkeys(names)))

        async def run(mt: MemoryType) -> None:
            tier = self.memories[mt]
            watch = Stopwatch()
            ctx: MemoryContext | None = None
            try:
                async with asyncio.timeout(timeout):  # (no extra task per tier, unlike wait_for)
                    if mt is MemoryType.VECTOR_DATABASE and steer_task is not None:
                        ctx = await self._steered_vector(tier, req, vector_budget, steer_task, timeout)
                    elif summary_only and mt is MemoryType.CONVERSATION_SUMMARY and hasattr(
                        tier, "get_summary_context"
                    ):
                        # the buffer supplies recent_conversation: the summary tier reads only its summary
                        ctx = await tier.get_summary_context(req, max_tokens=budget)
                    else:
                        tier_budget = vector_budget if mt is MemoryType.VECTOR_DATABASE else budget
                        ctx = await tier.get_context(req, max_tokens=tier_budget)
                results[mt] = ctx
            except Exception as exc:
                degraded[mt.value] = _reason(exc, timeout_ms)
                log.warning("tier_degraded", tier=mt.value, reason=degraded[mt.value])
            finally:
                latency[mt.value] = watch.ms
                if shared and mt is MemoryType.ENTITY_MEMORY:
                    latency["entity_steering"] = watch.ms
                    share_names(ctx)

        order = list(active)
        try:
            if shared:
                steer_task = asyncio.get_running_loop().create_future()
                order.sort(key=lambda m: m is not MemoryType.ENTITY_MEMORY)  # sequential mode: entities first
            elif steer:
                steer_task = asyncio.ensure_future(find_names())
            if self.config.parallel_queries:
                await asyncio.gather(*(run(mt) for mt in order))
            else:
                if steer_task is not None and not shared:
                    await asyncio.wait({steer_task})
                for mt in order:
                    await run(mt)
            if steer_task is not None and steer_task.done() and not steer_task.cancelled():
                names = steer_task.result()
        finally:
            if steer_task is not None and not steer_task.done():
                steer_task.cancel()
        return results, latency, degraded, names

    async def _steered_vector(
        self,
        tier: BaseMemory,
        req: ContextRequest,
        budget: int,
        steer_task: asyncio.Future[list[str]],
        deadline_s: float,
    ) -> MemoryContext:
        """The vector search, steered by the entities the query names when they are known in time.

        A tier with ``get_steered_context`` (the vector tier) starts its similarity search at once and
        only its full-text leg waits for the names; others wait for them before searching.
        """

        async def names() -> list[str]:
            try:
                return await asyncio.wait_for(asyncio.shield(steer_task), deadline_s * STEERING_SHARE)
            except TimeoutError:
                log.info("entity_steering_late", waited_ms=deadline_s * STEERING_SHARE * 1000)
                return []

        steered = getattr(tier, "get_steered_context", None)
        if steered is not None:
            ctx: MemoryContext = await steered(req, max_tokens=budget, entities=names())
            return ctx
        found = await names()
        if found:
            req = replace(req, filters={**req.filters, "entities": found})
        return await tier.get_context(req, max_tokens=budget)

    # writing a turn --------------------------------------------------------------------------
    async def store_turn(
        self,
        session_id: str,
        user_id: str = "default",
        user_message: str | None = None,
        assistant_message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_at: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Store one exchange durably in the conversation tier, then embed / extract in the background.

        ``created_at`` is when the exchange happened (default: now; importing an old conversation keeps
        its dates, which the context renders). Returns once the messages are committed (``stored``);
        ``scheduled`` names the background jobs. Raises ValidationError, before writing anything, when
        either message is invalid.
        """
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValidationError("'metadata' must be a mapping", field="metadata")
        when = _aware(created_at)
        if user_message is None and assistant_message is None:
            raise ValidationError("store_turn needs user_message and/or assistant_message", field="user_message")
        meta = dict(metadata or {})
        limit = self.config.max_message_chars
        messages: list[Message] = []
        for role, text, field in (
            ("user", user_message, "user_message"),
            ("assistant", assistant_message, "assistant_message"),
        ):
            if text is None:
                continue
            if not isinstance(text, str) or not text.strip():
                raise ValidationError(f"'{field}' must be a non-empty string", field=field)
            if "\x00" in text:
                raise ValidationError(f"'{field}' contains a NUL character, which PostgreSQL cannot store", field=field)
            try:
                msg = Message.from_any(
                    {"session_id": session_id, "user_id": user_id, "role": role, "content": text, "metadata": meta,
                     "created_at": when},
                    max_chars=limit,
                )
            except ValidationError as exc:
                bad = exc.field if exc.field != "content" else field
                raise ValidationError(f"{field}: {exc.message}", field=bad) from None
            messages.append(msg)
        stores = await self._ensure()

        stored: list[dict[str, Any]] = []
        writer = self._conversation_writer()
        if writer is not None:
            store_many = getattr(writer, "store_many", None)
            refs = await store_many(messages) if store_many is not None else [await writer.store(m) for m in messages]
            for msg, ref in zip(messages, refs, strict=True):
                stored.append({"role": msg.role, "id": ref.id, "tier": ref.memory_type.value, "durable": ref.durable})
        scheduled = self._schedule_turn_jobs(stores, messages, stored)
        return {"session_id": session_id, "user_id": messages[0].user_id, "stored": stored, "scheduled": scheduled}

    def _conversation_writer(self) -> BaseMemory | None:
        """The tier that writes conversation messages: the summary (it writes through its buffer), else the buffer."""
        for mt in (MemoryType.CONVERSATION_SUMMARY, MemoryType.CONVERSATION_BUFFER):
            if mt in self.memories:
                return self.memories[mt]
        return None

    def _schedule_turn_jobs(self, stores: Stores, messages: list[Message], stored: list[dict[str, Any]]) -> list[str]:
        """Submit the turn's slow work (embedding every message, entity extraction) to the background worker."""
        scheduled: list[str] = []
        ids = [int(ref["id"]) if str(ref.get("id", "")).isdigit() else None for ref in stored]
        ids += [None] * (len(messages) - len(ids))
        vector = self.memories.get(MemoryType.VECTOR_DATABASE)
        if vector is not None:

            async def embed_turn() -> None:
                await index_turn(stores, vector, messages, ids)

            stores.worker.submit(embed_turn, name="turn_embedding")
            scheduled.append("turn_embedding")
        user = next((m for m in messages if m.role == "user"), None)
        message_id = next((i for m, i in zip(messages, ids, strict=True) if m.role == "user"), None)
        entity = self.memories.get(MemoryType.ENTITY_MEMORY)
        process = getattr(entity, "process", None)
        if user is not None and entity is not None and process is not None:

            async def extract_entities() -> None:
                await process(user.content, user_id=user.user_id, session_id=user.session_id, role="user",
                              source_message_id=message_id, observed_at=user.created_at)

            stores.worker.submit(extract_entities, name="entity_extraction")
            scheduled.append("entity_extraction")
        return scheduled

    async def flush(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - mirrors BackgroundWorker.flush
        """Wait until all background work (embeddings, summaries, entity extraction) submitted so far is done."""
        stores = await self._ensure()
        for _ in range(3):
            for tier in self.memories.values():
                tier_flush = getattr(tier, "flush", None)
                if tier_flush is not None:
                    await asyncio.wait_for(tier_flush(), timeout)
            await stores.worker.flush(timeout)
            if stores.worker.pending == 0:
                return

    async def forget(self, user_id: str) -> dict[str, int]:
        """Delete everything of ``user_id`` from every tier (Redis and PostgreSQL); return counts per tier.

        Pending background work is flushed first so that no job writes the user's data back afterwards;
        a final SCAN removes any Redis key left under the user's tenant tag (``redis_keys``).
        """
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValidationError("'user_id' is required and must be a non-empty string", field="user_id")
        stores = await self._ensure()
        await self.flush()
        counts: dict[str, int] = {}
        errors: dict[str, str] = {}
        for mt, tier in self.memories.items():
            try:
                counts[mt.value] = int(await tier.forget_user(user_id))
            except Exception as exc:
                errors[mt.value] = _reason(exc, 0)
        counts["redis_keys"] = await self._sweep_redis(stores, user_id)
        if errors:
            raise BackendUnavailable(
                f"forget({user_id!r}) failed in: {errors}; counts so far: {counts}", field="user_id"
            )
        log.info("user_forgotten", user_id=user_id, counts=counts)
        return counts

    @staticmethod
    async def _sweep_redis(stores: Stores, user_id: str) -> int:
        removed = 0
        batch: list[Any] = []
        async for key in stores.redis.scan_iter(match=stores.keys.pattern(user_id), count=500):
            batch.append(key)
            if len(batch) >= 500:
                removed += int(await stores.redis.unlink(*batch))
                batch = []
        if batch:
            removed += int(await stores.redis.unlink(*batch))
        return removed

    # health ----------------------------------------------------------------------------------
    async def health_check(self) -> HealthStatus:
        """Each enabled tier and backend with status and latency; overall healthy / degraded / unhealthy.

        ``unhealthy``: PostgreSQL (the record) is down, or a required tier is unhealthy.
        ``degraded``: Redis is down while PostgreSQL answers, or an optional tier is not healthy, or a
        required tier is degraded. Otherwise ``healthy``.
        """
        watch = Stopwatch()
        try:
            stores = await self._ensure()
        except Exception as exc:
            return HealthStatus(status="unhealthy", details={"error": _reason(exc, 0)})

        async def ping(fn: Any) -> dict[str, Any]:
            try:
                ms = await asyncio.wait_for(fn(), HEALTH_TIMEOUT_S)
                return {"status": "healthy", "latency_ms": round(ms, 3)}
            except Exception as exc:
                return {"status": "unhealthy", "error": _reason(exc, HEALTH_TIMEOUT_S * 1000)}

        async def tier_health(mt: MemoryType) -> dict[str, Any]:
            t = Stopwatch()
            try:
                status = await asyncio.wait_for(self.memories[mt].health_check(), HEALTH_TIMEOUT_S)
                out = dict(status.as_dict()) if isinstance(status, HealthStatus) else dict(status)
            except Exception as exc:
                out = {"status": "unhealthy", "details": {"error": _reason(exc, HEALTH_TIMEOUT_S * 1000)}}
            out["latency_ms"] = round(t.ms, 3)
            out["required"] = mt in self.required
            return out

        types = list(self.memories)
        redis_h, pg_h, *tiers_h = await asyncio.gather(
            ping(stores.ping_redis), ping(stores.ping_postgres), *(tier_health(mt) for mt in types)
        )
        memories = {mt.value: h for mt, h in zip(types, tiers_h, strict=True)}
        status: HealthState = "healthy"
        reasons: list[str] = []
        if pg_h["status"] != "healthy":
            status = "unhealthy"
            reasons.append("postgres is down")
        elif redis_h["status"] != "healthy":
            status = "degraded"
            reasons.append("redis is down")
        for mt in types:
            tier_status = memories[mt.value].get("status")
            if tier_status == "healthy":
                continue
            if mt in self.required and tier_status == "unhealthy":
                status = "unhealthy"
                reasons.append(f"required tier {mt.value} is unhealthy")
            else:
                if status == "healthy":
                    status = "degraded"
                reasons.append(f"tier {mt.value} is {tier_status}")
        worker = stores.worker
        details: dict[str, Any] = {
            "backends": {"redis": redis_h, "postgres": pg_h},
            "memories": memories,
            "required": sorted(m.value for m in self.required),
            "reasons": reasons,
            "background": {
                "pending": worker.pending,
                "succeeded": worker.stats.succeeded,
                "failed": worker.stats.failed,
                "last_error": worker.stats.last_error,
            },
        }
        if self.init_errors:
            details["init_errors"] = dict(self.init_errors)
        return HealthStatus(status=status, latency_ms=round(watch.ms, 3), details=details)


__all__ = ["DEFAULT_SECTION", "TIER_CLASSES", "TIER_SECTIONS", "MemoryOrchestrator"]
