"""The README's Python blocks, run verbatim and in order, as a new user would: a fresh HOME, no keys, no servers."""

from __future__ import annotations

from pathlib import Path

from protocol_server import ProtocolServer, _protocol_server_session, protocol_server  # noqa: F401  (fixtures)
from snippets import ROOT, fresh_env, python_blocks, run_script, script

# `call_your_llm` is the reader's own model call: a stub that checks what it is sent
PRELUDE = '''
sent = []
def call_your_llm(messages):
    sent.append(messages)
    assert messages and messages[-1]["role"] == "user", messages
    return "You live in Lisbon."
async def my_model(messages):
    return call_your_llm([*messages]) if messages and messages[-1]["role"] == "user" else "ok"
'''


def test_every_readme_python_block_runs_as_written(tmp_path: Path, protocol_server: ProtocolServer) -> None:  # noqa: F811
    """README.md's blocks in one process; the reader's OpenAI client talks to the protocol server."""
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 2
    text = script(blocks, prelude=PRELUDE, epilogue='assert len(sent) >= 1, sent\nprint("README-OK")\n')
    # the reader's own OpenAI client (block 3) talks to a local server speaking OpenAI's protocol;
    # memory itself stays on the offline defaults, as with no key
    env = fresh_env(tmp_path, {"OPENAI_BASE_URL": protocol_server.openai_base_url, "OPENAI_API_KEY": "sk-test"})
    done = run_script(text, tmp_path, "readme.py", env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.rstrip().endswith("README-OK"), done.stdout
    assert "Hello, I need help with Python async programming" in done.stdout  # the first block's print
    assert done.stderr == ""  # a library prints nothing unless the application configures logging
