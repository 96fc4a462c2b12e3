"""JSON decoding on the hot path: ``orjson`` when installed (optional), else the standard library.

Decoding is the same either way: whatever ``orjson`` refuses (NaN literals, very deep nesting) is
decoded again by ``json.loads``, and so is text with a run of 19 or more digits, which may be an
integer beyond 64 bits (recent orjson releases read those as floats instead of refusing them); results
and errors match the standard library.
"""

from __future__ import annotations

import json
import re
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

    _LONG_DIGITS = re.compile(r"\d{19}")
    _LONG_DIGITS_B = re.compile(rb"\d{19}")

    def loads(raw: str | bytes | bytearray | memoryview) -> Any:
        """Parse JSON text (str or UTF-8 bytes): orjson, falling back to ``json.loads`` on what it refuses."""
        if isinstance(raw, str):
            wide = _LONG_DIGITS.search(raw) is not None
        else:
            wide = _LONG_DIGITS_B.search(raw) is not None
        if wide:  # maybe an integer beyond 64 bits: exact only in json
            return _loads_std(raw)
        try:
            return _fast(raw)
        except _fast_error:
            return _loads_std(raw)

else:  # pragma: no cover - exercised when orjson is not installed
    loads = _loads_std


__all__ = ["ORJSON", "loads"]
