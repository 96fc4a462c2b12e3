"""``memory-orchestrator demo``: run twice on one data dir; the second run remembers the first."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from memory_implementations.composer import compose
from memory_implementations.context import ComprehensiveContext
from memory_implementations.demo.sections import allotment
from memory_implementations.demo.view import DemoView
from memory_implementations.tokens import get_tokenizer

RUN_TIMEOUT_S = 240


def run_demo(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI's demo in a fresh process with no server URLs or keys in its environment."""
    dropped = ("REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("MEMORY_")}
    env["MEMORY_DATA_DIR"] = str(data_dir / "unused-default")
    return subprocess.run(
        [sys.executable, "-m", "memory_implementations.cli", "demo", "--data-dir", str(data_dir / "demo"), *extra],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=env,
        check=False,
        cwd=data_dir,
    )


def user_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Ada: ")]


@pytest.fixture
def fresh_dir() -> Iterator[Path]:
    """A private temp dir (not pytest's basetemp, which concurrent pytest sessions may prune mid-run)."""
    with tempfile.TemporaryDirectory(prefix="mi-test-demo-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def two_runs() -> Iterator[tuple[subprocess.CompletedProcess[str], ...]]:
    with tempfile.TemporaryDirectory(prefix="mi-test-demo-") as d:
        data_dir = Path(d)
        first = run_demo(data_dir)
        second = run_demo(data_dir)
        yield first, second


def test_first_run_shows_context_supersession_recall_and_outage(two_runs):
    first, _ = two_runs
    out = first.stdout
    assert first.returncode == 0, first.stderr[-2000:]
    assert "No previous run found: this is run #1" in out
    # every turn shows the composed context with per-section tokens against the budget
    assert out.count("Composed context:") == 9
    assert "used / allotted" in out and "Tier latency (ms):" in out
    assert re.search(r"Composed context: \d+ of 900 tokens used, \d+ unused", out)
    # supersession: Lisbon moved to history when Berlin arrived, in the key-value tier
    history = out[out.index("Supersession of 'city'"):]
    assert "Lisbon" in history.split("Turn 8/9")[0]
    assert "Berlin  (current)" in history
    # the dog's name comes back after the buffer window moved on (not from the recent messages)
    recall = next(line for line in out.splitlines() if line.startswith("Recall: 'Biscuit'"))
    assert "found in" in recall and "NOT FOUND" not in recall
    assert "vector_search" in recall or "summary" in recall or "entities" in recall
    flat = " ".join(out.split("Recall: 'Biscuit'")[1][:300].split())
    assert "not among this session's recent messages" in flat
    # one tier down for one turn: labelled as simulated, the turn still answered
    assert "Simulated outage: the vector_database tier raises BackendUnavailable this turn." in out
    assert "DEGRADED: vector tier: BackendUnavailable: simulated outage" in out
    assert "Recall: 'Berlin' found in" in out
    assert "Traceback" not in out and "Traceback" not in first.stderr


def test_second_run_remembers_the_first(two_runs):
    _, second = two_runs
    out = second.stdout
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Previous run detected: run #1" in out and "This is run #2" in out
    # nothing the user says in run 2 mentions the dog or the city ...
    assert not any("Biscuit" in line or "Berlin" in line for line in user_lines(out))
    # ... yet both are recalled, before anything in run 2 could have restated them
    recall_biscuit = out.index("Recall: 'Biscuit' found in")
    recall_berlin = out.index("Recall: 'Berlin' found in")
    first_reply = out.index("Assistant (")
    assert recall_biscuit < first_reply and recall_berlin < first_reply
    assert "NOT FOUND" not in out
    assert "Traceback" not in out and "Traceback" not in second.stderr


def test_reset_forgets_the_previous_runs(fresh_dir):
    first = run_demo(fresh_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    reset = run_demo(fresh_dir, "--reset")
    assert reset.returncode == 0, reset.stderr[-2000:]
    assert "--reset: forgot the demo user" in reset.stdout
    assert "No previous run found: this is run #1" in reset.stdout


# --- the context view, rendered without the servers ---------------------------------------------

LONG_FACT = (
    "Ada moved from Lisbon to Berlin in December, keeps her dog Biscuit, works on Kafka consumer lag at "
    "Northwind Logistics and wants concise answers with Python examples whenever the topic is code."
)
URL = "https://example.com/" + "a" * 110  # one word longer than the terminal


def composed(max_total_tokens: int = 900) -> ComprehensiveContext:
    """A real composition whose sections need far less than the budget."""
    items = {
        "key_value": [{"content": "city: Berlin"}, {"content": "dog: Biscuit"}],
        "vector_search": [{"content": LONG_FACT, "score": 0.9}, {"content": URL, "score": 0.8}],
        "recent_conversation": [{"role": "user", "content": "Where do I live these days?"}],
    }
    ctx = compose(items, max_total_tokens=max_total_tokens, counter=get_tokenizer("gpt-4o"), sections=list(items))
    ctx.latency_ms = {"key_value_store": 1.5, "vector_database": 3.25, "compose": 0.5, "total": 4.0}
    return ctx


def render(ctx: ComprehensiveContext, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), no_color=True, highlight=False, emoji=False)
    DemoView(console).context(ctx)
    return console.file.getvalue()  # type: ignore[attr-defined]


def section_line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_budget_column_shows_the_allotment_not_just_what_was_used() -> None:
    ctx = composed()
    section = ctx.sections["key_value"]
    assert section.tokens < allotment(section)  # the section did not fill its allotment
    assert section.budget == section.tokens  # (the composer's cap alone would read "25 / 25")
    out = render(ctx, 100)
    line = section_line(out, "key_value")
    assert f"{section.tokens} / {allotment(section)}" in line
    assert "·" in line  # the gauge is not full
    # every section's allotment is shown, and together they do not exceed the budget
    assert sum(allotment(s) for s in ctx.sections.values()) <= ctx.max_total_tokens


def test_unused_budget_of_the_whole_context_is_shown() -> None:
    ctx = composed()
    out = render(ctx, 100)
    used = ctx.total_tokens
    assert 0 < used < 900
    assert f"Composed context: {used} of 900 tokens used, {900 - used} unused" in out


def test_allotment_is_the_reflowed_budget_when_it_exceeds_the_share() -> None:
    ctx = composed(max_total_tokens=120)  # tight: the long fact does not fit its share
    section = ctx.sections["vector_search"]
    assert allotment(section) == max(section.budget, int(section.share))
    assert f"{section.tokens} / {allotment(section)}" in section_line(render(ctx, 100), "vector_search")


def test_at_80_columns_no_line_is_wider_and_recalled_text_is_whole() -> None:
    out = render(composed(), 80)
    assert max(len(line) for line in out.splitlines()) <= 80
    flat = "".join(out.split())  # wrapping only inserts line breaks and indentation
    for text in (LONG_FACT, URL, "city: Berlin", "Where do I live these days?"):
        assert "".join(text.split()) in flat, text
    assert "…" not in out  # nothing was cut short
