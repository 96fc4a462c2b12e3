"""Every ```python block of docs/*.md, run verbatim and in order, one subprocess per file (see snippets.py).

Each file gets a fresh HOME and TMPDIR, no keys of the caller and memory on its offline defaults. The
names a file's blocks assume but do not define (the reader's own orchestrator, model, LLM call, a
running service ...) are defined in that file's PRELUDE below, each one documented. OpenAI and Gemini
SDK clients the blocks build with no arguments (``AsyncOpenAI()``, ``genai.Client()``) reach the local
protocol server through the SDKs' own environment variables: ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``,
and ``GOOGLE_GEMINI_BASE_URL`` / ``GOOGLE_API_KEY`` (google-genai reads both, see its ``_base_url.py``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from protocol_server import ProtocolServer, _protocol_server_session, protocol_server  # noqa: F401  (fixtures)
from service_fixtures import Keys, LiveServer, new_user
from snippets import ROOT, fresh_env, python_blocks, run_script, script

pytest_plugins = ["service_fixtures"]  # `live`, `keys`

DOCS = ROOT / "docs"


def test_every_docs_file_with_python_blocks_is_covered() -> None:
    """A new docs page with Python blocks needs its own test here (and a prelude if it assumes names)."""
    with_blocks = {p.name for p in DOCS.glob("*.md") if python_blocks(p)}
    assert with_blocks == {"integrations.md", "service.md", "explain.md"}


def _check(done: subprocess.CompletedProcess[str], marker: str) -> str:
    """The script exited 0, printed nothing on stderr (the library is quiet) and got to its last line."""
    assert done.returncode == 0, done.stderr[-6000:]
    assert done.stderr == "", done.stderr[-6000:]
    assert done.stdout.rstrip().endswith(marker), done.stdout[-4000:]
    return done.stdout


# --- docs/explain.md: self-contained (its own orchestrator in a tempfile.mkdtemp data_dir) ---------------

def test_explain_md_blocks_run_as_written(tmp_path: Path) -> None:
    blocks = python_blocks(DOCS / "explain.md")
    assert len(blocks) == 1
    done = run_script(script(blocks, epilogue='print("EXPLAIN-OK")\n'), tmp_path, "explain.py", fresh_env(tmp_path))
    out = _check(done, "EXPLAIN-OK")
    # one line per section ("name: used/allotment tokens, [statuses]"), then the vector search's best hits
    lines = {line.split(":")[0]: line for line in out.splitlines() if " tokens, [" in line}
    assert {"summary", "entities", "key_value", "working_memory", "vector_search", "recent_conversation"} <= set(lines)
    assert "'kept'" in lines["vector_search"] and "'kept'" in lines["entities"], lines
    assert '"status": "kept"' in out and "I moved to Lisbon last spring" in out, out  # the stored turn was found


# --- docs/service.md: an HTTP client of a running service ----------------------------------------------

# The reader's own names: `user_text` (what their user said) and `llm` (their model call: a stub that
# checks it is sent the context's messages with the user's text last). The service's address and the
# reader's API key come from the environment (MEMORY_SERVICE_URL, MEMORY_SERVICE_API_KEY), as the block says.
SERVICE_PRELUDE = '''
user_text = "I moved to Lisbon last spring with my dog Rex."
sent = []
def llm(messages):
    assert isinstance(messages, list) and messages[-1] == {"role": "user", "content": user_text}, messages
    sent.append(messages)
    return "Lisbon is lovely."
'''
SERVICE_EPILOGUE = '''
assert len(sent) == 1 and isinstance(ctx, dict) and "text" in ctx, ctx
print("SERVICE-OK")
'''


def test_service_md_blocks_run_against_a_live_service(tmp_path: Path, live: LiveServer, keys: Keys) -> None:
    blocks = python_blocks(DOCS / "service.md")
    assert len(blocks) == 1
    user = new_user()
    key, _ = keys.create(user)  # `memory-orchestrator keys create --user <user>`, through the same KeyStore
    env = fresh_env(tmp_path, {"MEMORY_SERVICE_URL": live.url, "MEMORY_SERVICE_API_KEY": key})
    done = run_script(script(blocks, prelude=SERVICE_PRELUDE, epilogue=SERVICE_EPILOGUE), tmp_path, "service.py", env)
    _check(done, "SERVICE-OK")
    with live.client(key) as c:  # the block's turn is stored for the key's user
        got = c.get("/v1/sessions/s-1/messages")
        assert got.status_code == 200, got.text
        contents = [(m["role"], m["content"]) for m in got.json()["messages"]]
    assert contents == [("user", "I moved to Lisbon last spring with my dog Rex."), ("assistant", "Lisbon is lovely.")]


# --- docs/integrations.md: thirteen blocks, one namespace, as one async program ------------------------

# The reader's own names, which the blocks use without defining them:
# - `orchestrator`: their MemoryOrchestrator (here on the embedded defaults in the fresh HOME), already
#   holding a fact about u1, so that reads have something to find;
# - `config`: their configuration, for the blocks that build an orchestrator or store from it (`{}`:
#   the defaults, every tier enabled);
# - `my_model`: their async model function (a stub that checks it is sent OpenAI-style messages);
# - `model`: their LangChain chat model (a fake that answers "You live in Lisbon." and accepts tools);
# - `current_user`: the user their application authenticated; `query`: their user's question;
# - `anthropic`: their Anthropic client (a stub: the SDK is not a dependency; it checks the request is
#   `{"system", "messages"}` as memory_prompt(format="anthropic") promises).
INTEGRATIONS_PRELUDE = '''
import gc
import warnings
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from memory_implementations import MemoryOrchestrator

# LangChain's own warning for the API the LangChain block shows (the doc says it is deprecated); after
# importing langchain_core, whose import puts its "default" filter for these warnings first
warnings.filterwarnings("ignore", message="RunnableWithMessageHistory is deprecated")

orchestrator = MemoryOrchestrator()
_runner.run(orchestrator.store_turn("s0", "u1", "I live in Lisbon with my dog Rex.", "Noted!"))
_runner.run(orchestrator.flush())
config = {}

sent = []
async def my_model(messages):
    assert messages and messages[-1]["role"] == "user", messages
    sent.append(messages)
    return "Try a mushroom risotto."

class _ChatModel(FakeListChatModel):
    def bind_tools(self, tools, **kwargs):
        return self
model = _ChatModel(responses=["You live in Lisbon."])
current_user = "alice"
query = "Where do I live now?"

class _Messages:
    async def create(self, *, model, max_tokens, system, messages):
        assert isinstance(system, str) and messages and messages[-1]["role"] == "user", (system, messages)
        sent.append(messages)
        return {"role": "assistant", "content": [{"type": "text", "text": "You live in Lisbon."}]}
class _Anthropic:
    messages = _Messages()
anthropic = _Anthropic()
'''

# Checks on what the blocks left behind (names from several blocks), then every orchestrator they built
# is closed, with the LangGraph store (their background jobs finish; nothing is left for the exit warning).
INTEGRATIONS_EPILOGUE = '''
assert t.used_memory and t.messages[-1] == {"role": "user", "content": "What should I cook tonight?"}, t.degraded
assert len(sent) == 2, sent                          # my_model (orchestrator.turn) and the Anthropic stub
assert set(request) == {"system", "messages"} and "Lisbon" in request["system"], request
assert llm.last_degraded == {}, llm.last_degraded    # MemoryAugmentedLLM read memory without trouble
assert len(li_tools) == len(tools) > 0, (li_tools, tools)
assert answer.content == "You live in Lisbon.", answer
_got = _runner.run(memory.aget())                    # the LlamaIndex Memory with the orchestrator's block
assert [m.role.value for m in _got] == ["system", "user"] and "<memory>" in _got[0].content, _got
assert block.last_context is not None, block.last_error
assert result.original_count == 41 and result.summarized_count > 0 and result.summary, result  # Message utilities
print("summarizer:", result.summarizer)

async def _close_all():
    await store.aclose()
    for o in {id(o): o for o in gc.get_objects() if isinstance(o, MemoryOrchestrator)}.values():
        await o.close()
_runner.run(_close_all())
_runner.close()
print("INTEGRATIONS-OK")
'''


def test_integrations_md_blocks_run_as_written(tmp_path: Path, protocol_server: ProtocolServer) -> None:  # noqa: F811
    blocks = python_blocks(DOCS / "integrations.md")
    assert len(blocks) == 13
    env = fresh_env(tmp_path, {"OPENAI_BASE_URL": protocol_server.openai_base_url, "OPENAI_API_KEY": "sk-test",
                               "GOOGLE_GEMINI_BASE_URL": protocol_server.base_url, "GOOGLE_API_KEY": "g-test"})
    text = script(blocks, prelude=INTEGRATIONS_PRELUDE, epilogue=INTEGRATIONS_EPILOGUE)
    done = run_script(text, tmp_path, "integrations.py", env)
    out = _check(done, "INTEGRATIONS-OK")
    assert '"count":' in out and "I live in Lisbon with my dog Rex." in out, out  # search_memory's JSON text
    assert "Hello! I'm learning Python." in out, out     # the LlamaIndex ChatMemoryBuffer read it back
    assert "['vegetarian']" in out, out                  # the LangGraph graph recalled what it stored
    assert "summarizer: llm:gpt-4o-mini" in out, out     # asummarize_messages(llm_provider="openai", ...)

    chats = [r.body for r in protocol_server.requests_to("/chat/completions")]
    # with_memory(AsyncOpenAI()): the memory block went into a system message before the user's question
    first = chats[0]["messages"]
    assert first[0]["role"] == "system" and "Lisbon" in first[0]["content"], first
    assert first[-1] == {"role": "user", "content": "Where do I live?"}, first
    # memory_tools("openai"): the model was offered the memory tools
    offered = [{t["function"]["name"] for t in c.get("tools", [])} for c in chats]
    assert any({"search_memory", "remember"} <= names for names in offered), offered
    # with_memory(genai.Client()): both Gemini calls (async, then sync in a worker thread) got memory
    gemini = [r.body for r in protocol_server.requests_to(":generateContent")]
    assert len(gemini) == 2, gemini
    assert all("Lisbon" in g["systemInstruction"]["parts"][0]["text"] for g in gemini), gemini
