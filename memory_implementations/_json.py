"""JSON decoding on the hot path: ``orjson`` when installed (optional), else the standard library.

Decoding is the same either way: whatever ``orjson`` refuses (integers beyond 64 bits, NaN literals,
very deep nesting) is decoded again by ``json.loads``, so results and errors match the standard library.
"""

from __future__ import annotations

import json
from typing import Any

try:  # optional dependency: a faster parser, same results
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised when orjson is not installed
    _orjson = None  # type: ignore[assignment]

#: Whether ``orjson`` is in use.
ORJSON = _orjson is not None


def _loads_std(raw: str | bytes | bytearray | memoryview) -> Any:
    """``json.loads`` (memoryview accepted, as psycopg passes one)."""
    if isinstance(raw, memoryview):
        raw = bytes(raw)
    return json.loads(raw)


if _orjson is not None:
    _fast = _orjson.loads
    _fast_error = _orjson.JSONDecodeError

    def loads(raw: str | bytes | bytearray | memoryview) -> Any:
        """Parse JSON text (str or UTF-8 bytes): orjson, falling back to ``json.loads`` on what it refuses."""
        try:
            return _fast(raw)
        except _fast_error:
            return _loads_std(raw)

else:  # pragma: no cover - exercised when orjson is not installed
    loads = _loads_std


__all__ = ["ORJSON", "loads"]
