"""The demo's view of one composed context: per section tokens used against its allotment, then what it recalled.

Stacked rather than a wide table: each section gets one summary line (name, used / allotted, gauge,
tiers) and its recalled items below it, wrapped to the console's width with a hanging indent, so an
80-column terminal shows every item in full instead of a squeezed column.

A section's *allotment* is what the composer let it have: its weighted share of the budget, or more
when reflow gave it what other sections left (``max(budget, share)`` of ``SectionContext``). The
composer caps a section at its demand, so ``SectionContext.budget`` alone equals ``tokens`` whenever
the section's items all fit, which is why it is not shown alone. When the budget is tight, reflow
may offer the same leftover to several sections, so allotments need not add up to the budget; the
context's *unused* tokens (budget minus the largest rendering) are exact.
"""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..context import ComprehensiveContext, SectionContext

#: Items shown per section (the rest are counted); each is shown whole: the budget already bounds it.
ITEMS_SHOWN = 3
GAUGE_WIDTH = 10
LEGEND = (
    "used / allotted: what a section's items cost / what it could spend (its weighted share of the budget, "
    "or more when reflow offered it what other sections left)"
)


def allotment(section: SectionContext) -> int:
    """Tokens the section was allowed after reflow: its weighted share, or the composer's budget when larger."""
    return max(section.budget, math.floor(section.share + 1e-9))


def unused_tokens(ctx: ComprehensiveContext) -> int:
    """The part of the context's budget no rendering used (budget minus the largest rendering)."""
    return max(0, ctx.max_total_tokens - ctx.total_tokens)


def gauge(used: int, allotted: int, width: int = GAUGE_WIDTH) -> str:
    """A small text gauge of ``used`` against ``allotted``."""
    if allotted <= 0:
        return "·" * width
    filled = min(width, round(width * used / allotted))
    return "█" * filled + "·" * (width - filled)


def summary_line(ctx: ComprehensiveContext) -> Text:
    """``Composed context: U of B tokens used, N unused (tokenizer ...)``."""
    return Text(
        f"Composed context: {ctx.total_tokens} of {ctx.max_total_tokens} tokens used, "
        f"{unused_tokens(ctx)} unused (tokenizer {ctx.tokenizer_method or '?'})",
        style="bold",
    )


def one_line(text: str) -> str:
    """``text`` whole, on one line (whitespace collapsed); the console wraps it."""
    return " ".join(str(text).split())


def sections_view(ctx: ComprehensiveContext, tier_labels: dict[str, str]) -> RenderableType:
    """Every section as a summary line followed by its recalled items (wrapped, never cut at the edge)."""
    rows = []
    for name, section in ctx.sections.items():
        allotted = allotment(section)
        tiers = ", ".join(tier_labels.get(t, t) for t in section.tiers) or "-"
        rows.append((name, section, f"{section.tokens} / {allotted}", gauge(section.tokens, allotted), tiers))
    name_w = max([len("Section"), *(len(r[0]) for r in rows)])
    num_w = max([len("used / allotted"), *(len(r[2]) for r in rows)])
    parts: list[RenderableType] = [
        Text(f"{'Section':<{name_w}}  {'used / allotted':>{num_w}}  {'':<{GAUGE_WIDTH}}  from tier", style="dim")
    ]
    for name, section, numbers, bar, tiers in rows:
        parts.append(Text(f"{name:<{name_w}}  {numbers:>{num_w}}  {bar}  {tiers}"))
        parts.append(_items(section))
    return Group(*parts)


def _items(section: SectionContext) -> RenderableType:
    """The section's best items, one bullet each, wrapped under a hanging indent."""
    grid = Table.grid(padding=0)
    grid.add_column(width=4, no_wrap=True)
    grid.add_column(overflow="fold")
    contents = section.contents
    if not contents:
        grid.add_row("", Text("(nothing)", style="dim"))
    for content in contents[:ITEMS_SHOWN]:
        grid.add_row("  • ", Text(one_line(content)))
    if len(contents) > ITEMS_SHOWN:
        grid.add_row("", Text(f"… and {len(contents) - ITEMS_SHOWN} more", style="dim"))
    return grid


__all__ = ["LEGEND", "allotment", "gauge", "one_line", "sections_view", "summary_line", "unused_tokens"]
