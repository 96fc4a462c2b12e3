"""Why a context came out as it did: the record ``get_comprehensive_context(..., explain=True)`` returns.

The composer and the orchestrator write into a :class:`CompositionTrace` while they work (only when
asked: a normal turn pays nothing); :meth:`CompositionTrace.to_dict` is the JSON-ready explanation:

* ``budget``: the request's budget, the fixed overhead (preamble, headers), what each rendering used
  and what was left unused;
* ``sections``: per section its allotment after reflow against what it used, and every candidate
  it was offered, best first, with its score, its token cost and its fate: ``kept``, ``budget`` (did
  not fit the section's allotment after reflow), ``duplicate`` (repeats an item of the section named
  in ``duplicate_of``, which has priority), ``trimmed`` (dropped after rendering to bring a rendering
  within the budget);
* ``tiers``: per tier its latency, whether it was degraded and why, how many items it offered; the
  vector tier adds its search mode and every memory its search returned, including those it left
  out itself (``tier_budget``: past the tokens the orchestrator gave it) with their dense, lexical
  and fused scores;
* ``entities``: the entities the entity tier offered and those left out because neither the query
  nor what was retrieved names them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .composer import Candidate

PREVIEW_CHARS = 200

KEPT = "kept"
BUDGET = "budget"
DUPLICATE = "duplicate"
TRIMMED = "trimmed"


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class CompositionTrace:
    """What the composer and the orchestrator decided for one context, filled in only when explaining."""

    duplicates: list[tuple[str, Candidate, str]] = field(default_factory=list)  # (section, candidate, of)
    trimmed: list[tuple[str, Candidate]] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    tiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[str, Any] = field(default_factory=dict)

    def duplicate(self, section: str, cand: Candidate, of_section: str) -> None:
        """``cand`` was dropped from ``section``: it repeats an item of ``of_section``."""
        self.duplicates.append((section, cand, of_section))

    def trim(self, section: str, cand: Candidate) -> None:
        """``cand`` was dropped after rendering, to bring a rendering within the budget."""
        self.trimmed.append((section, cand))

    def record_section(
        self, name: str, *, ordered: Sequence[Candidate], selected: Sequence[Candidate], summary: Mapping[str, Any]
    ) -> None:
        """Every candidate of section ``name`` with its fate (``ordered``: best first, after dedupe)."""
        chosen = {id(c) for c in selected}
        trimmed = {id(c) for s, c in self.trimmed if s == name}
        rows = []
        for cand in ordered:
            if id(cand) in chosen:
                status = KEPT
            elif id(cand) in trimmed:
                status = TRIMMED
            else:
                status = BUDGET
            rows.append(_candidate(cand, status))
        rows += [_candidate(c, DUPLICATE, duplicate_of=of) for s, c, of in self.duplicates if s == name]
        self.sections[name] = {**summary, "candidates": rows}

    def record_tier(self, name: str, **facts: Any) -> None:
        """One tier's latency, degraded reason, items offered and tier-specific facts."""
        self.tiers[name] = {k: v for k, v in facts.items() if v is not None}

    def record_entities(self, offered: Iterable[Mapping[str, Any]], kept: Iterable[Mapping[str, Any]]) -> None:
        """The entity items offered and those the relevance filter left out."""
        kept_ids = {id(item) for item in kept}
        offered = list(offered)
        self.entities = {
            "offered": [_entity_name(i) for i in offered],
            "left_out": [_entity_name(i) for i in offered if id(i) not in kept_ids],
            "rule": "kept when the query names it (a first-person query names the user) or a retrieved item does",
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready explanation."""
        return {"budget": dict(self.budget), "sections": dict(self.sections), "tiers": dict(self.tiers),
                "entities": dict(self.entities)}


def _candidate(cand: Candidate, status: str, **extra: Any) -> dict[str, Any]:
    item = cand.item
    out: dict[str, Any] = {
        "id": item.get("id"),
        "content": preview(cand.content),
        "score": round(cand.score, 6),
        "tokens": cand.cost,
        "status": status,
    }
    if cand.truncated:
        out["truncated"] = True
    for key in ("kind", "similarity", "sources", "created_at"):
        if item.get(key) is not None:
            out[key] = item[key]
    out.update(extra)
    return out


def _entity_name(item: Mapping[str, Any]) -> str:
    entity = item.get("entity")
    if isinstance(entity, Mapping) and entity.get("name"):
        return str(entity["name"])
    return preview(str(item.get("content") or ""), 60)


__all__ = ["BUDGET", "DUPLICATE", "KEPT", "TRIMMED", "CompositionTrace", "preview"]
