"""``memory_implementations._json``: orjson when installed, identical results to ``json.loads`` either way."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_implementations import _json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_loads_matches_the_standard_library(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert _json.loads(text) == json.loads(text)
    assert _json.loads(text.encode()) == json.loads(text)
    assert _json.loads(memoryview(text.encode())) == json.loads(text)


def test_what_orjson_refuses_is_decoded_like_json_loads() -> None:
    big = '{"n": 123456789012345678901234567890, "x": NaN}'
    out = _json.loads(big)
    assert out["n"] == 123456789012345678901234567890 and out["x"] != out["x"]
    with pytest.raises(json.JSONDecodeError):
        _json.loads(b"{not json")


def test_works_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson -> ImportError
    try:
        plain = importlib.reload(_json)
        assert plain.ORJSON is False
        assert plain.loads(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
        assert plain.loads(memoryview(b"[1]")) == [1]
    finally:
        monkeypatch.delitem(sys.modules, "orjson")
        importlib.reload(_json)


@pytest.mark.parametrize("text", ["-9223372036854775809", "[18446744073709551616]", '{"n": 99999999999999999999}'])
def test_integers_beyond_64_bits_stay_exact(text: str) -> None:
    assert _json.loads(text) == json.loads(text)
    assert _json.loads(text.encode()) == json.loads(text)
    assert _json.loads(memoryview(text.encode())) == json.loads(text)
