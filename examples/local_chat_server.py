"""A local, OpenAI-compatible chat server for the examples: no network, no weights, no key.

``POST /v1/chat/completions`` (plain or ``stream: true`` as server-sent events) answers by quoting the
line of memory (from the system message, or an earlier user message) that shares the most words with
the question. Not intelligent, but it shows exactly what memory put in front of the model. Point any
OpenAI SDK client at it: ``OpenAI(base_url=server.base_url, api_key="local")``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "local-quote-model"
_STOP = set("a an the is are was were am i my me you your to of in on at for and or it that this what whats "
            "which who where when how do does did again please tell remind called name s".split())


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def quote_answer(messages: list[dict[str, Any]]) -> str:
    """The reply: the memory line that best matches the last user message (or a plain acknowledgement)."""
    question = _text(messages[-1].get("content")) if messages else ""
    if not question.rstrip().endswith("?"):
        return "(local model) Noted."
    lines: list[str] = []
    for m in messages[:-1]:
        text = _text(m.get("content"))
        if m.get("role") == "system":
            lines += [ln.strip("-* ").strip() for ln in text.splitlines() if ln.strip()[:1] in "-*"]
        elif m.get("role") == "user":
            lines.append(text)
    wanted = _words(question)
    scored = sorted(((len(wanted & _words(ln)), ln) for ln in lines), key=lambda t: -t[0])
    if scored and scored[0][0] > 0:
        return f"(local model) From memory: {scored[0][1]}"
    return "(local model) I don't have anything in memory about that."


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the example's output clean."""

    def do_POST(self) -> None:
        """Answer ``/v1/chat/completions``."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        answer = quote_answer(body.get("messages") or [])
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        if not body.get("stream"):
            self._send(200, {"id": cid, "object": "chat.completion", "created": created, "model": MODEL,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": answer}}],
                             "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        words = answer.split(" ")
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            self._event({"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._event({"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        self.wfile.flush()

    def _send(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class LocalChatServer:
    """The server on a free port of 127.0.0.1, in a daemon thread; a context manager."""

    def __init__(self) -> None:
        """Bind a free local port (serving starts on ``start``)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """The OpenAI SDK's ``base_url`` for this server."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> LocalChatServer:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
