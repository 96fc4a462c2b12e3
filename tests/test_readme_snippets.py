"""The README's Python blocks, run verbatim and in order, as a new user would: a fresh HOME, no keys, no servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from protocol_server import ProtocolServer, _protocol_server_session, protocol_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

# `call_your_llm` is the reader's own model call: a stub that checks what it is sent
PRELUDE = '''
import asyncio
_runner = asyncio.Runner()  # the blocks with top-level await share one event loop, as in one async main()
sent = []
def call_your_llm(messages):
    sent.append(messages)
    assert messages and messages[-1]["role"] == "user", messages
    return "You live in Lisbon."
async def my_model(messages):
    return call_your_llm([*messages]) if messages and messages[-1]["role"] == "user" else "ok"
'''


def runnable(block: str, index: int) -> str:
    """A block as a script fragment: blocks with top-level ``await`` run inside ``asyncio.run``."""
    if "asyncio.run(" in block or not re.search(r"^(?!\s*(async )?def ).*\bawait\b", block, re.MULTILINE):
        return block
    body = textwrap.indent(block, "    ")
    return f"async def _block_{index}():\n{body}\n    globals().update(locals())\n_runner.run(_block_{index}())\n"


def test_every_readme_python_block_runs_as_written(tmp_path: Path, protocol_server: ProtocolServer) -> None:
    blocks = BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    script = PRELUDE + "\n".join(runnable(b, i) for i, b in enumerate(blocks))
    script += '\nassert len(sent) >= 1, sent\nprint("README-OK")\n'
    (tmp_path / "readme.py").write_text(script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_URL", "_API_KEY", "_KEY")) and
           not k.startswith("MEMORY_")}
    env.update(HOME=str(tmp_path / "home"))
    # the reader's own OpenAI client (block 3) talks to a local server speaking OpenAI's protocol;
    # memory itself stays on the offline defaults, as with no key
    env.update(OPENAI_BASE_URL=protocol_server.openai_base_url, OPENAI_API_KEY="sk-test",
               MEMORY_EMBEDDING_PROVIDER="local", MEMORY_LLM_PROVIDER="offline")
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run([sys.executable, str(tmp_path / "readme.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.rstrip().endswith("README-OK"), done.stdout
    assert "Hello, I need help with Python async programming" in done.stdout  # the first block's print
    assert done.stderr == ""  # a library prints nothing unless the application configures logging
