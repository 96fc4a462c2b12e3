"""Redis key layout: ``<prefix>:{<tenant>:<scope>}:<tier>:<name>``.

The braces are a Redis Cluster hash tag, so one session's (or namespace's) keys share a slot and
multi-key pipelines work on a cluster. Components are percent-encoded so that ``:``, ``{`` and ``}``
inside ids can neither break the hash tag nor make two different ids collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


def _enc(part: str) -> str:
    return quote(str(part), safe="-_.@")


@dataclass(frozen=True, slots=True)
class KeyBuilder:
    """Builds every Redis key the tiers use."""

    prefix: str = "mi"

    def key(self, tenant: str, scope: str, tier: str, name: str = "") -> str:
        """Key of ``name`` in ``tier`` for one tenant and one session or namespace."""
        base = f"{self.prefix}:{{{_enc(tenant)}:{_enc(scope)}}}:{tier}"
        return f"{base}:{_enc(name)}" if name else base

    def pattern(self, tenant: str, scope: str | None = None, tier: str | None = None) -> str:
        """A SCAN pattern matching a tenant's keys (optionally one scope and tier)."""
        scope_part = _enc(scope) if scope is not None else "*"
        tier_part = tier if tier is not None else "*"
        return f"{self.prefix}:{{{_enc(tenant)}:{scope_part}}}:{tier_part}*"



__all__ = ["KeyBuilder"]
