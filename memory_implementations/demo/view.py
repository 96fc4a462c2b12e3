"""Rendering of the demo with ``rich``: readable in a terminal, plain and wide enough when piped."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..context import ComprehensiveContext
from .sections import LEGEND, sections_view, summary_line

TIER_LABELS = {
    "conversation_buffer": "buffer",
    "conversation_summary": "summary",
    "vector_database": "vector",
    "working_memory": "working",
    "key_value_store": "key-value",
    "entity_memory": "entity",
    "entity_steering": "entity steering",
}


def make_console() -> Console:
    """A console for stdout: colours and live status on a TTY; no colour, 110 columns when piped."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(width=110, no_color=True, highlight=False, force_terminal=False, emoji=False)


def short(text: str, limit: int = 72) -> str:
    """One line of at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Found:
    """Where a fact was found in the composed context."""

    fact: str
    sections: tuple[str, ...]
    tiers: tuple[str, ...]
    evidence: str
    in_recent: bool

    @property
    def ok(self) -> bool:
        """True when the fact is in the context."""
        return bool(self.sections)


EVIDENCE_ORDER = ("key_value", "vector_search", "entities", "summary", "working_memory", "recent_conversation")


def find_fact(ctx: ComprehensiveContext, fact: str) -> Found:
    """Look ``fact`` up in every section of ``ctx`` (case-insensitive); evidence from memory sections first."""
    needle = fact.casefold()
    hits: dict[str, list[str]] = {}
    tiers: list[str] = []
    for name, section in ctx.sections.items():
        found = [c for c in section.contents if needle in c.casefold()]
        if found:
            hits[name] = found
            tiers.extend(t for t in section.tiers if t not in tiers)
    order = [n for n in EVIDENCE_ORDER if n in hits] + [n for n in hits if n not in EVIDENCE_ORDER]
    evidence = hits[order[0]][0] if order else ""
    return Found(fact, tuple(hits), tuple(tiers), short(evidence, 90), "recent_conversation" in hits)


class DemoView:
    """Prints the demo's turns, contexts and findings."""

    def __init__(self, console: Console) -> None:
        """Print to ``console``."""
        self.console = console
        self._legend_shown = False

    def banner(self, *, data_dir: str, run: int, previous: Mapping[str, Any] | None, providers: str) -> None:
        """The opening panel: where data lives, which run this is."""
        lines = [
            "memory_implementations demo: six memory tiers composed into one token-budgeted context per turn.",
            f"Data: {data_dir}  (embedded Redis + PostgreSQL/pgvector; it persists between runs)",
            f"Models: {providers}",
        ]
        if previous:
            lines.append(
                f"Previous run detected: run #{previous.get('count')} finished at {previous.get('last_run', '?')}. "
                f"This is run #{run}: it asks about facts stored by the first run without restating them."
            )
        else:
            lines.append("No previous run found: this is run #1. Run the demo again to see it remember.")
        self.console.print(Panel("\n".join(lines), title="memory-orchestrator demo", box=box.ROUNDED))

    def note(self, text: str, style: str = "dim") -> None:
        """A line of commentary."""
        self.console.print(Text(text, style=style))

    def turn_header(self, number: int, total: int, session: str, user: str, note: str) -> None:
        """The user's message with the turn number and what it demonstrates."""
        self.console.rule(f"Turn {number}/{total} · session {session}")
        if note:
            self.console.print(Text(note, style="italic cyan"))
        self.console.print(Text.assemble(("Ada: ", "bold"), user))

    def context(self, ctx: ComprehensiveContext) -> None:
        """Sections with tokens used against their allotment, what each recalled, the unused budget, latencies."""
        self.console.print(summary_line(ctx))
        if not self._legend_shown:
            self._legend_shown = True
            self.console.print(Text(LEGEND, style="dim italic"))
        self.console.print(sections_view(ctx, TIER_LABELS))
        self.console.print(Text("Tier latency (ms): " + latency_line(ctx.latency_ms), style="dim"))
        if ctx.degraded:
            for tier, reason in ctx.degraded.items():
                self.console.print(
                    Text(f"DEGRADED: {TIER_LABELS.get(tier, tier)} tier: {reason} — the turn went on without it",
                         style="bold red")
                )

    def recall(self, found: Sequence[Found]) -> None:
        """Where each expected fact came from."""
        for f in found:
            if not f.ok:
                self.console.print(Text(f"Recall: '{f.fact}' NOT FOUND in the composed context", style="bold red"))
                continue
            where = ", ".join(f.sections)
            tiers = ", ".join(TIER_LABELS.get(t, t) for t in f.tiers)
            recent = (
                "also in this session's recent messages"
                if f.in_recent
                else "not among this session's recent messages"
            )
            self.console.print(
                Text(f"Recall: '{f.fact}' found in {where} (tiers: {tiers}); {recent}", style="bold green")
            )

    def reply(self, text: str, *, scripted: bool) -> None:
        """The assistant's reply (scripted, or built from what memory recalled)."""
        label = "Assistant (scripted)" if scripted else "Assistant (answer built from recalled memory)"
        self.console.print(Text.assemble((f"{label}: ", "bold magenta"), text))

    def history(self, key: str, current: Any, rows: Iterable[Mapping[str, Any]],
                entity_rows: Iterable[Mapping[str, Any]] = ()) -> None:
        """Superseded values of a key-value fact (and the entity attribute history, when there is one)."""
        table = Table(title=f"Supersession of '{key}'", box=box.SIMPLE_HEAD, show_edge=False)
        table.add_column("Tier")
        table.add_column("Value")
        table.add_column("Valid from")
        table.add_column("Superseded at")
        for r in rows:
            table.add_row("key-value", str(r.get("value")), _ts(r.get("valid_from")), _ts(r.get("superseded_at")))
        for r in entity_rows:
            table.add_row(f"entity ({r.get('attribute')})", str(r.get("value")), _ts(r.get("valid_from")),
                          _ts(r.get("superseded_at")))
        table.add_row("key-value", f"{current}  (current)", "", "")
        self.console.print(table)


def latency_line(latency: Mapping[str, float]) -> str:
    """``tier 1.2 · tier 0.8 · total 3.4`` with short tier names."""
    parts = [f"{TIER_LABELS.get(k, k)} {v:.1f}" for k, v in latency.items() if k not in ("total", "compose")]
    if "compose" in latency:
        parts.append(f"compose {latency['compose']:.1f}")
    if "total" in latency:
        parts.append(f"total {latency['total']:.1f}")
    return " · ".join(parts)


def _ts(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else ""


__all__ = ["DemoView", "Found", "find_fact", "latency_line", "make_console", "short"]
