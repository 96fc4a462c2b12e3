"""The scripts in examples/ run offline on the embedded servers and print what they promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUN_TIMEOUT_S = 300


def run_example(name: str, *args: str) -> str:
    """Run ``examples/<name>`` as a new user would (no MEMORY_DATA_DIR) with TMPDIR pointed at a fresh dir.

    Returns stdout (fails on rc != 0). The example's scratch data dir must be inside that TMPDIR while it
    runs and gone afterwards: no directory may be left behind.
    """
    dropped = ("REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("MEMORY_")}
    # tiktoken's download cache is meant to outlive a run: keep it where it normally is
    env.setdefault("TIKTOKEN_CACHE_DIR", os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    # a private temp dir: pytest's basetemp may be pruned by concurrent pytest sessions
    with tempfile.TemporaryDirectory(prefix="mi-test-example-") as scratch:
        env["TMPDIR"] = scratch
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / name), *args],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            env=env,
            cwd=scratch,
            check=False,
        )
        assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        assert f"data dir: {os.path.join(scratch, 'mi-example-')}" in proc.stdout  # a temp dir, not the user's data
        left = sorted(p.name for p in Path(scratch).iterdir() if p.is_dir())
        assert left == [], f"{name} left {left} in its temp dir"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def line_after(output: str, marker: str) -> str:
    lines = output.splitlines()
    index = next(i for i, line in enumerate(lines) if marker in line)
    return lines[index + 1]


@pytest.fixture(scope="module")
def basic() -> str:
    return run_example("basic_usage.py")


def test_basic_usage_buffer_keeps_the_window(basic):
    assert "stored 8 messages, window shows 4" in basic
    window = basic.split("=== ConversationBufferMemory")[1].split("===")[1]
    assert "We have 12 partitions and 3 consumers." in window
    assert "my dog is called Biscuit" not in window  # older than the 4-message window


def test_basic_usage_summary_covers_older_messages(basic):
    section = basic.split("=== ConversationSummaryMemory")[1].split("=== VectorDatabaseMemory")[0]
    summary = section.split("summary:", 1)[1]
    assert "(none yet)" not in summary.splitlines()[0]
    assert "Ada" in summary  # the introduction, no longer in the recent window, is in the summary


def test_basic_usage_vector_search_finds_the_pet(basic):
    assert "Biscuit" in line_after(basic, "Q: What pet does Ada have?")
    assert "peanuts" in line_after(basic, "Q: Is there any food Ada must avoid?")


def test_basic_usage_working_memory_evicts_least_important(basic):
    section = basic.split("=== WorkingMemory")[1].split("=== KeyValueStoreMemory")[0]
    assert "goal: Fix consumer lag" in section
    assert "it is sunny" not in section  # importance 0.1: evicted when capacity 3 was exceeded
    assert "items kept: 3 of capacity 3; evictions: 1" in section
    assert "[action] Scale the consumer group to 12" in section


def test_basic_usage_kv_supersession(basic):
    assert "city now: Berlin" in basic
    assert re.search(r"city was: Lisbon \(version 1, superseded \d{4}-\d\d-\d\dT", basic)
    assert "'length': 'concise'" in basic


def test_basic_usage_entities_and_attribute_history(basic):
    section = basic.split("=== EntityMemory")[1]
    assert "Maria (person)" in section and "Northwind Logistics (organization)" in section
    assert "User.city was Lisbon" in section


def test_advanced_orchestration():
    out = run_example("advanced_orchestration.py")
    assert "alice recall: Biscuit=True Porto=True" in out
    assert "bob sees Alice's facts: Biscuit=False Porto=False; his own: Pixel=True" in out
    assert "entities named in the query: ['Maria']" in out
    shares = re.search(r"vector_search share of a 300-token budget: default (\d+), weighted (\d+)", out)
    assert shares and int(shares.group(2)) > int(shares.group(1))
    assert "degraded tiers: ['working_memory']" in out
    answered = re.search(r"sections still answered: \[(.*)\]", out)
    assert answered and "'vector_search'" in answered.group(1) and "working_memory" not in answered.group(1)
    assert "health: healthy" in out
    assert "recall after forget: Biscuit=False" in out


def test_llm_integration_attaches_memory_and_fails_open():
    out = run_example("llm_integration.py")
    assert "model: local model (no OPENAI_API_KEY)" in out
    assert "-> (streamed) (local model) Noted." in out  # the stream passed through the wrapper
    answer = line_after(out, "new session, you: What is my dog called?")
    assert "From memory:" in answer and "Biscuit" in answer  # stored by the wrapper, recalled in a new session
    assert re.search(r"memory used: True \(\d+ context tokens\)", out)
    # LangGraph: the profile the graph saved through MemoryStore reaches the next model call's memory
    commute = line_after(out, "agent, you: How do I commute to work?")
    assert "From memory:" in commute and "cycles to work" in commute
    assert "store item: {'text': 'Sam cycles to work.'}" in out
    down = out.split("memory down:")[1]
    assert down.startswith(" answered without memory; reason: BackendUnavailable")
    assert "(local model)" in down  # the model still answered
    assert "memory_llm_failopen_total +1; turns waiting to be stored: 1" in down


def test_performance_testing_reports_latency_and_ingest():
    out = run_example("performance_testing.py", "--users", "4", "--messages", "12", "--turns", "25")
    ingest = re.search(r"bulk ingest: 48 messages in [\d.]+ s = ([\d,]+) messages/s", out)
    assert ingest and int(ingest.group(1).replace(",", "")) > 0
    row = re.search(r"\| get_comprehensive_context \| 25 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", out)
    assert row and 0 < float(row.group(1)) <= float(row.group(3))
    for tier in ("vector_database", "conversation_summary", "entity_memory", "key_value_store", "working_memory"):
        assert f"inside: {tier} | 25 |" in out
    assert re.search(r"\| store_turn \(durable part\) \| 25 \|", out)


def test_turn_latency_benchmark_smoke_writes_only_its_docs_section():
    """benchmarks/turn_latency.py at tiny sizes: every row measured, the docs section replaced, others kept."""
    with tempfile.TemporaryDirectory(prefix="mi-test-bench-") as tmp:
        docs = Path(tmp) / "benchmarks.md"
        docs.write_text("# Benchmarks\n\n## Vector search\n\nkeep me\n\n## Turn latency\n\nold figures\n\n"
                        "## Service\n\nkeep me too\n", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES.parent / "benchmarks" / "turn_latency.py"), "--users", "8", "--messages",
             "10", "--vectors", "160", "--big-tenant", "400", "--iterations", "20", "--long-session", "60",
             "--quick", "--write-docs", str(docs)],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=tmp, check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        text = docs.read_text(encoding="utf-8")
    for row in ("floor 1: pipelined Redis read", "floor 2: floor 1 + JSON decode", "`get_comprehensive_context` (all",
                "big tenant: `get_comprehensive_context`", "session with 60 messages", "`store_turn` (durable part)"):
        assert re.search(re.escape(row) + r"[^|]*\| [\d.]+ \| [\d.]+ \|", proc.stdout), row
    assert "| p50 ≤ 1.5 ms |" in proc.stdout and "Bulk ingest:" in proc.stdout
    assert "old figures" not in text and "floor 1: pipelined Redis read" in text
    assert "keep me\n" in text and "## Service\n\nkeep me too" in text
    assert text.index("## Vector search") < text.index("## Turn latency") < text.index("## Service")
