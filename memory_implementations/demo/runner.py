"""Runs the scripted demo against a real ``MemoryOrchestrator`` on the embedded servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from ..context import ComprehensiveContext
from ..errors import BackendUnavailable, NotFound
from ..memories.entity import EntityMemory
from ..memories.kv import KeyValueStoreMemory
from ..memories.vector import VectorDatabaseMemory
from ..memories.working import WorkingMemory
from ..orchestrator import MemoryOrchestrator
from ..types import ContextRequest, MemoryContext, MemoryType
from .script import DEMO_USER, META_NAMESPACE, Turn, first_run, returning_run
from .view import DemoView, Found, find_fact

BUDGET = 900


@dataclass
class DemoResult:
    """What a run did (for callers and tests)."""

    run: int
    turns: int
    degraded_turns: int
    simulated_outages: int
    recalled: dict[str, bool]


def embedding_provider() -> str:
    """``local`` (offline MiniLM) when its model files are installed, else the lexical fallback."""
    from ..providers.local_embedder import local_model_problem

    return "local" if local_model_problem() is None else "lexical"


def demo_config(data_dir: str) -> dict[str, Any]:
    """The demo's configuration: all six tiers, a 4-message buffer window, offline models."""
    return {
        "data_dir": data_dir,
        "enabled_memories": [m.value for m in MemoryType],
        "buffer_window_size": 4,
        "window_size": 4,
        "max_total_tokens": BUDGET,
        "embedding_provider": embedding_provider(),
        "embedding_dim": 384,
        "llm_provider": "offline",
        "similarity_threshold": 0.25,
    }


@contextlib.asynccontextmanager
async def simulated_outage(orchestrator: MemoryOrchestrator, tier: MemoryType) -> AsyncIterator[None]:
    """Make one tier's ``get_context`` raise BackendUnavailable until the block exits (a simulated outage)."""
    memory = orchestrator.memories[tier]

    async def down(*_args: Any, **_kwargs: Any) -> MemoryContext:
        raise BackendUnavailable(f"simulated outage of the {tier.value} tier (demo)")

    names = [n for n in ("get_context", "get_steered_context") if hasattr(memory, n)]
    for name in names:
        setattr(memory, name, down)
    try:
        yield
    finally:
        for name in names:
            delattr(memory, name)  # the class's method again


class Demo:
    """The scripted conversation, turn by turn, shown through a :class:`DemoView`."""

    def __init__(self, data_dir: str, console: Console, *, reset: bool = False, budget: int = BUDGET) -> None:
        """Prepare a run on ``data_dir``; ``reset`` forgets the demo user first."""
        self.data_dir = data_dir
        self.view = DemoView(console)
        self.console = console
        self.reset = reset
        self.budget = budget
        self.config = demo_config(data_dir)
        self.orchestrator: MemoryOrchestrator | None = None

    @property
    def orch(self) -> MemoryOrchestrator:
        """The running orchestrator."""
        assert self.orchestrator is not None
        return self.orchestrator

    def tier(self, memory_type: MemoryType) -> Any:
        """One of the orchestrator's tiers."""
        return self.orch.memories[memory_type]

    async def run(self) -> DemoResult:
        """Open the orchestrator, play the script for this run, record the run, close."""
        with self.console.status("Starting the embedded Redis and PostgreSQL + pgvector…"):
            self.orchestrator = MemoryOrchestrator(self.config)
            await self.orchestrator.initialize()
        with self.console.status("Loading the offline embedding model…"):
            vector: VectorDatabaseMemory = self.tier(MemoryType.VECTOR_DATABASE)
            await vector.embedder.embed(["warm-up"])  # load it now, not inside the first turn's deadline
        try:
            return await self._play()
        finally:
            await self.orch.close()

    async def _play(self) -> DemoResult:
        kv: KeyValueStoreMemory = self.tier(MemoryType.KEY_VALUE_STORE)
        if self.reset:
            counts = await self.orch.forget(DEMO_USER)
            removed = sum(counts.values())
            self.view.note(f"--reset: forgot the demo user ({removed} records and keys removed).", style="yellow")
        previous = await kv.get("runs", namespace=META_NAMESPACE, user_id=DEMO_USER)
        previous = previous if isinstance(previous, Mapping) else None
        run = int(previous.get("count", 0)) + 1 if previous else 1
        providers = f"embeddings: {self.config['embedding_provider']} (offline), summaries and entities: offline"
        self.view.banner(data_dir=self.data_dir, run=run, previous=previous, providers=providers)
        turns = first_run() if run == 1 else returning_run(run)
        result = DemoResult(run=run, turns=len(turns), degraded_turns=0, simulated_outages=0, recalled={})
        for number, turn in enumerate(turns, 1):
            ctx = await self._turn(number, len(turns), turn, result)
            if ctx.degraded:
                result.degraded_turns += 1
            if turn.outage is not None:
                result.simulated_outages += 1
        await kv.set(
            "runs",
            {"count": run, "last_run": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")},
            namespace=META_NAMESPACE,
            user_id=DEMO_USER,
        )
        self._footer(result)
        return result

    async def _turn(self, number: int, total: int, turn: Turn, result: DemoResult) -> ComprehensiveContext:
        self.view.turn_header(number, total, turn.session, turn.user, turn.note)
        request = ContextRequest(
            query=turn.user, session_id=turn.session, user_id=DEMO_USER, max_total_tokens=self.budget
        )
        if turn.outage is not None:
            self.view.note(f"Simulated outage: the {turn.outage.value} tier raises BackendUnavailable this turn.",
                           style="yellow")
            async with simulated_outage(self.orch, turn.outage):
                ctx = await self.orch.get_comprehensive_context(request)
        else:
            ctx = await self.orch.get_comprehensive_context(request)
        self.view.context(ctx)
        reply = turn.reply
        if turn.recall:
            found = [find_fact(ctx, fact) for fact in turn.recall]
            self.view.recall(found)
            result.recalled.update({f.fact: f.ok for f in found})
            reply = answer_from(found)
        self.view.reply(reply, scripted=not turn.recall)
        await self.orch.store_turn(
            session_id=turn.session, user_id=DEMO_USER, user_message=turn.user, assistant_message=reply
        )
        await self._app_writes(turn)
        # background work (embedding, summaries, entity extraction) lands before the next turn
        await self.orch.flush()
        for key in turn.history:
            await self._show_history(key)
        return ctx

    async def _app_writes(self, turn: Turn) -> None:
        """What the application itself records after a turn: profile facts and task state."""
        kv: KeyValueStoreMemory = self.tier(MemoryType.KEY_VALUE_STORE)
        for key, value in turn.facts.items():
            await kv.set(key, value, user_id=DEMO_USER)
        working: WorkingMemory = self.tier(MemoryType.WORKING_MEMORY)
        for note in turn.working:  # working memory is scoped to the session (its namespace)
            if note.step_type:
                await working.add_reasoning_step(turn.session, note.step_type, note.content, user_id=DEMO_USER)
            else:
                await working.store({"namespace": turn.session, "user_id": DEMO_USER, "key": note.key,
                                     "content": note.content, "importance": note.importance})

    async def _show_history(self, key: str) -> None:
        kv: KeyValueStoreMemory = self.tier(MemoryType.KEY_VALUE_STORE)
        rows = await kv.history(key, user_id=DEMO_USER)
        current = await kv.get(key, user_id=DEMO_USER)
        entity_rows: list[dict[str, Any]] = []
        entity: EntityMemory = self.tier(MemoryType.ENTITY_MEMORY)
        if key == "city":
            with contextlib.suppress(NotFound):
                entity_rows = await entity.get_attribute_history("User", user_id=DEMO_USER, attribute="city")
        self.view.history(key, current, rows, entity_rows)

    def _footer(self, result: DemoResult) -> None:
        recalled = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result.recalled.items()) or "-"
        self.console.rule("Done")
        self.view.note(
            f"Run #{result.run}: {result.turns} turns, {result.degraded_turns} degraded "
            f"({result.simulated_outages} by a simulated outage), "
            f"recalled from memory: {recalled}.",
            style="bold",
        )
        if result.run == 1:
            self.view.note("Run `memory-orchestrator demo` again: the next run remembers this one. "
                           "`--reset` starts over.", style="bold")
        else:
            self.view.note("The recalled facts were written by run #1, in another process and session. "
                           "`memory-orchestrator demo --reset` starts over.", style="bold")


def answer_from(found: list[Found]) -> str:
    """The reply for a recall question: quotes what memory returned, or admits it is missing."""
    if not all(f.ok for f in found):
        missing = ", ".join(f.fact for f in found if not f.ok)
        return f"Sorry, I don't have that in memory ({missing})."
    parts = [f"'{f.fact}' (from {', '.join(f.sections)}: \"{f.evidence}\")" for f in found]
    return "From memory: " + "; ".join(parts) + "."


async def run_demo(data_dir: str, console: Console, *, reset: bool = False) -> DemoResult:
    """Play the demo on ``data_dir``; returns what it did."""
    return await Demo(data_dir, console, reset=reset).run()


__all__ = ["BUDGET", "Demo", "DemoResult", "answer_from", "demo_config", "run_demo", "simulated_outage"]
