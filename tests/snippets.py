"""Running a Markdown file's ```python blocks verbatim, in order, as one script in a fresh process.

Shared by test_readme_snippets.py (README.md) and test_docs_snippets.py (docs/*.md). A file's blocks
become one script: ``prelude`` (the names the blocks assume but do not define, e.g. the reader's own
LLM call), then every block as written, then ``epilogue`` (checks and clean-up). Blocks with top-level
``await`` run as coroutines on one shared ``asyncio.Runner`` named ``_runner`` (as in one ``async
main()``), so connections opened by one block are usable by the next. The script runs in a subprocess
with a fresh HOME, a private TMPDIR, no API keys, URLs or ``MEMORY_*`` settings of the caller, and
memory on its offline defaults.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

#: First lines of every script: the event loop the ``await`` blocks share.
RUNNER = "import asyncio\n_runner = asyncio.Runner()  # the blocks with top-level await share one event loop\n"


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def has_top_level_await(block: str) -> bool:
    """Whether ``block`` awaits outside a function (``await``, ``async with``, ``async for``), as Python sees it."""
    code = compile(block, "<block>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    return bool(code.co_flags & inspect.CO_COROUTINE)


def runnable(block: str, index: int) -> str:
    """A block as a script fragment: blocks with top-level ``await`` run on ``_runner``, their names kept global."""
    if not has_top_level_await(block):
        return block
    body = textwrap.indent(block, "    ")
    return f"async def _block_{index}():\n{body}\n    globals().update(locals())\n_runner.run(_block_{index}())\n"


def script(blocks: list[str], *, prelude: str = "", epilogue: str = "") -> str:
    """``RUNNER`` + ``prelude`` + every block (made runnable) + ``epilogue``."""
    return RUNNER + prelude + "\n" + "\n".join(runnable(b, i) for i, b in enumerate(blocks)) + "\n" + epilogue


def fresh_env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without keys, URLs and ``MEMORY_*``; a fresh HOME and TMPDIR under ``tmp_path``.

    Memory runs on its offline defaults (local embedder, offline LLM) unless ``extra`` says otherwise.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_URL", "_API_KEY", "_KEY")) and not k.startswith("MEMORY_")}
    env.pop("XDG_RUNTIME_DIR", None)
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env.update(HOME=str(home), TMPDIR=str(tmp), MEMORY_EMBEDDING_PROVIDER="local", MEMORY_LLM_PROVIDER="offline")
    env.update(extra or {})
    return env


def run_script(text: str, tmp_path: Path, name: str, env: Mapping[str, str],
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Write ``text`` to ``tmp_path/name`` and run it with this interpreter in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=dict(env), capture_output=True, text=True,
                          timeout=timeout, check=False)


__all__ = [
    "BLOCK", "ROOT", "RUNNER", "fresh_env", "has_top_level_await", "python_blocks", "run_script", "runnable", "script",
]
