"""Redis key layout: ``<prefix>:{<tenant>:<scope>}:<tier>:<name>``.

The braces are a Redis Cluster hash tag, so one session's (or namespace's) keys share a slot and
multi-key pipelines work on a cluster. Components are percent-encoded so that ``:``, ``{`` and ``}``
inside ids can neither break the hash tag nor make two different ids collide.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import quote


@functools.lru_cache(maxsize=65536)
def _enc(part: str) -> str:
    """Percent-encode one key component (memoised: the same users and sessions recur every turn)."""
    return quote(str(part), safe="-_.@", errors="surrogatepass")


@dataclass(frozen=True, slots=True)
class KeyBuilder:
    """Builds every Redis key the tiers use."""

    prefix: str = "mi"

    def key(self, tenant: str, scope: str, tier: str, name: str) -> str:
        """Key of ``name`` in ``tier`` for one tenant and one session or namespace."""
        return f"{self.prefix}:{{{_enc(tenant)}:{_enc(scope)}}}:{tier}:{_enc(name)}"

    def pattern(self, tenant: str, scope: str | None = None, tier: str | None = None, name: str | None = None) -> str:
        """A SCAN pattern for a tenant's keys, narrowed to one scope, tier and name when given."""
        head = f"{self.prefix}:{{{_enc(tenant)}:{_enc(scope) if scope is not None else '*'}}}:"
        if tier is None:
            return head + "*"
        return f"{head}{tier}:{_enc(name) if name is not None else '*'}"


__all__ = ["KeyBuilder"]
