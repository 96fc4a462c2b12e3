"""The framework extras are declared, and each adapter names its extra when the framework is missing."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires

import pytest

EXTRAS = {"llamaindex": {"llama-index-core"}, "langchain": {"langchain-core"},
          "langgraph": {"langgraph", "langchain-core"},
          "integrations": {"llama-index-core", "langchain-core", "langgraph"}}


def declared(extra: str) -> set[str]:
    """Distribution names the installed package's metadata lists under ``extra``."""
    out = set()
    for req in requires("memory_implementations") or []:
        name, _, marker = req.partition(";")
        if f'extra == "{extra}"' in marker.replace("'", '"'):
            out.add(name.strip().split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower())
    return out


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_extras_are_declared(extra: str) -> None:
    assert declared(extra) == EXTRAS[extra]
    assert EXTRAS["integrations"] <= declared("dev")  # the test suite always drives the real libraries


BLOCK = """
import builtins, sys
real = builtins.__import__
def fake(name, *a, **k):
    if name.split(".")[0] in ("langgraph", "llama_index"):
        raise ImportError("blocked: " + name)
    return real(name, *a, **k)
builtins.__import__ = fake
import memory_implementations.integrations as i
try:
    getattr(i, sys.argv[1])
except ImportError as exc:
    print(exc)
"""


@pytest.mark.parametrize(("name", "extra"), [("MemoryStore", "langgraph"), ("OrchestratorMemoryBlock", "llamaindex")])
def test_missing_framework_names_the_extra(name: str, extra: str) -> None:
    out = subprocess.run([sys.executable, "-c", BLOCK, name], capture_output=True, text=True, check=True, timeout=120)
    assert f"[{extra}]" in out.stdout
