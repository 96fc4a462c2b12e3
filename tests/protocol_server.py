"""A local HTTP server speaking OpenAI's and Gemini's wire protocols, with scriptable failures.

Used by the provider tests to drive the real ``openai`` and ``google-genai`` SDKs without a network:

* OpenAI: ``POST /v1/embeddings`` and ``POST /v1/chat/completions`` (``response_format`` text,
  ``json_object`` and ``json_schema``; ``stream: true`` answers server-sent events: a role chunk, the
  text in word-sized deltas, a ``finish_reason`` chunk, a usage chunk when
  ``stream_options.include_usage``, then ``data: [DONE]``), and ``POST /v1/responses`` (the Responses
  API; ``stream: true`` answers ``response.created``, ``response.output_text.delta`` events and
  ``response.completed``).
* Gemini: ``POST /{v1,v1beta}/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``
  (one event per word-sized piece, the last with ``finishReason`` and ``usageMetadata``),
  ``:embedContent`` and ``:batchEmbedContents``.

A stream can be cut short with :meth:`ProtocolServer.cut_next_stream` (the connection closes after
``n`` text pieces, without a finish reason or ``[DONE]``).

Embeddings are deterministic: the sha256 of the text seeds a normal vector, L2-normalised, of the
requested dimension (``dimensions`` / ``outputDimensionality``, else ``default_dim``). Failures are
queued with :meth:`ProtocolServer.fail_next` and consumed one per request, in order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from memory_implementations.providers.retry import RetryPolicy

#: Retry settings that keep failure tests fast (waits of milliseconds, Retry-After capped at 10 ms).
FAST_RETRIES = RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.005, retry_after_cap=0.01, jitter=0.0)

_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_GEMINI_PATH = re.compile(
    r"^/(v1|v1beta)/models/(?P<model>[^:/]+):"
    r"(?P<method>generateContent|streamGenerateContent|embedContent|batchEmbedContents)$"
)


def fake_embedding(text: str, dim: int) -> list[float]:
    """Deterministic unit vector for ``text``: sha256-seeded normal draws, L2-normalised."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    vec = np.random.default_rng(seed).standard_normal(dim)
    vec /= np.linalg.norm(vec)
    return [float(x) for x in vec]


@dataclass
class Fault:
    """One scripted failure: an HTTP status (with optional Retry-After) or a malformed body."""

    status: int = 500
    retry_after: str | None = None
    malformed: bool = False
    body: str | None = None


@dataclass
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    answered: int = 0


@dataclass
class ServerState:
    """Everything a test scripts or inspects; guarded by ``lock``."""

    default_dim: int = 1536
    force_dim: int | None = None
    required_key: str | None = None
    faults: deque[Fault] = field(default_factory=deque)
    replies: deque[str] = field(default_factory=deque)
    stream_cuts: deque[int] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        state = self.server.state
        record = RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with state.lock:
            state.requests.append(record)
            fault = state.faults.popleft() if state.faults else None
        gemini = _GEMINI_PATH.match(self.path.split("?")[0])
        if fault is not None:
            record.answered = fault.status
            self._fault(fault, gemini=gemini is not None)
            return
        if state.required_key is not None and self._key() != state.required_key:
            record.answered = 401
            self._error(401, "Incorrect API key provided.", gemini=gemini is not None)
            return
        try:
            if self.path == "/v1/chat/completions" and isinstance(body, dict) and body.get("stream") is True:
                events = self._openai_chat_stream(body)
                record.answered = 200
                self._send_events(events)
                return
            if self.path == "/v1/responses" and isinstance(body, dict) and body.get("stream") is True:
                events = self._openai_responses_stream(body)
                record.answered = 200
                self._send_events(events)
                return
            if gemini is not None and gemini.group("method") == "streamGenerateContent":
                events = self._gemini_stream(gemini.group("model"), body)
                record.answered = 200
                self._send_events(events)
                return
            if self.path == "/v1/embeddings":
                payload = self._openai_embeddings(body)
            elif self.path == "/v1/chat/completions":
                payload = self._openai_chat(body)
            elif self.path == "/v1/responses":
                payload = self._openai_response(body, self._reply_text(_responses_input_text(body["input"]),
                                                                       None, False))
            elif gemini is not None:
                payload = self._gemini(gemini.group("model"), gemini.group("method"), body)
            else:
                record.answered = 404
                self._error(404, f"no route {self.path}", gemini=False)
                return
        except (KeyError, TypeError, ValueError) as exc:
            record.answered = 400
            self._error(400, f"bad request: {exc!r}", gemini=gemini is not None)
            return
        record.answered = 200
        self._send(200, json.dumps(payload).encode())

    # --- protocol bodies -------------------------------------------------------------------------

    def _dim(self, requested: Any) -> int:
        state = self.server.state
        if state.force_dim is not None:
            return state.force_dim
        return int(requested) if requested else state.default_dim

    def _openai_embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"]
        if isinstance(inputs, str):
            inputs = [inputs]
        dim = self._dim(body.get("dimensions"))
        data = []
        for i, text in enumerate(inputs):
            vec = fake_embedding(str(text), dim)
            if body.get("encoding_format") == "base64":
                emb: Any = base64.b64encode(np.asarray(vec, dtype=np.float32).tobytes()).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(str(t).split()) for t in inputs)
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _reply_text(self, messages_text: str, schema: dict[str, Any] | None, json_mode: bool) -> str:
        with self.server.state.lock:
            scripted = self.server.state.replies.popleft() if self.server.state.replies else None
        if scripted is not None:
            return scripted
        if schema is not None:
            return json.dumps(sample_for_schema(schema))
        if json_mode:
            return json.dumps({"echo": messages_text})
        return f"echo: {messages_text}"

    def _openai_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        last = str(messages[-1]["content"]) if messages else ""
        fmt = body.get("response_format") or {}
        schema = fmt.get("json_schema", {}).get("schema") if fmt.get("type") == "json_schema" else None
        text = self._reply_text(last, schema, fmt.get("type") == "json_object")
        return {
            "id": "chatcmpl-local",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def _pieces(self, text: str) -> tuple[list[str], bool]:
        """``text`` in word-sized pieces (joined they give ``text``) and whether the stream is cut short."""
        pieces = re.findall(r"\S+\s*|\s+", text) or [""]
        with self.server.state.lock:
            cut = self.server.state.stream_cuts.popleft() if self.server.state.stream_cuts else None
        if cut is not None:
            return pieces[:cut], True
        return pieces, False

    def _openai_chat_stream(self, body: dict[str, Any]) -> list[str]:
        messages = body["messages"]
        last = str(messages[-1]["content"]) if messages else ""
        pieces, cut = self._pieces(self._reply_text(last, None, False))
        model = body["model"]

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
            return json.dumps({"id": "chatcmpl-local", "object": "chat.completion.chunk", "created": 0,
                               "model": model, "choices": choices, "usage": usage})

        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        events += [chunk([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
        if cut:
            return events
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk([], {"prompt_tokens": 1, "completion_tokens": len(pieces),
                                     "total_tokens": 1 + len(pieces)}))
        events.append("[DONE]")
        return events

    def _openai_response(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        """A completed Responses API ``Response`` whose one output message says ``text``."""
        return {
            "id": "resp_local", "object": "response", "created_at": 0, "model": body["model"], "status": "completed",
            "instructions": body.get("instructions"), "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "output": [{"type": "message", "id": "msg_local", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        }

    def _openai_responses_stream(self, body: dict[str, Any]) -> list[str]:
        """Responses API events: created, text deltas, then completed (unless the stream is cut)."""
        text = self._reply_text(_responses_input_text(body["input"]), None, False)
        pieces, cut = self._pieces(text)
        seq = iter(range(1_000_000))

        def event(kind: str, **fields: Any) -> str:
            return json.dumps({"type": kind, "sequence_number": next(seq), **fields})

        created = {**self._openai_response(body, ""), "status": "in_progress", "output": []}
        events = [event("response.created", response=created)]
        events += [event("response.output_text.delta", item_id="msg_local", output_index=0, content_index=0,
                         delta=p, logprobs=[]) for p in pieces]
        if not cut:
            events.append(event("response.completed", response=self._openai_response(body, text)))
        return events

    def _gemini_stream(self, model: str, body: dict[str, Any]) -> list[str]:
        contents = body["contents"]
        last = _gemini_text(contents[-1]) if contents else ""
        pieces, cut = self._pieces(self._reply_text(last, None, False))
        events = []
        for i, piece in enumerate(pieces):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
            event: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
            if i == len(pieces) - 1 and not cut:
                candidate["finishReason"] = "STOP"
                event["usageMetadata"] = {"promptTokenCount": 1, "candidatesTokenCount": len(pieces),
                                          "totalTokenCount": 1 + len(pieces)}
            events.append(json.dumps(event))
        return events

    def _gemini(self, model: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "embedContent":
            text = _gemini_text(body["content"])
            return {"embedding": {"values": fake_embedding(text, self._dim(body.get("outputDimensionality")))}}
        if method == "batchEmbedContents":
            out = []
            for req in body["requests"]:
                out.append(
                    {"values": fake_embedding(_gemini_text(req["content"]), self._dim(req.get("outputDimensionality")))}
                )
            return {"embeddings": out}
        contents = body["contents"]
        last = _gemini_text(contents[-1]) if contents else ""
        gen = body.get("generationConfig") or {}
        schema = gen.get("responseSchema") or gen.get("responseJsonSchema")
        text = self._reply_text(last, schema, gen.get("responseMimeType") == "application/json")
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
            "modelVersion": model,
        }

    # --- plumbing --------------------------------------------------------------------------------

    def _key(self) -> str | None:
        auth = self.headers.get("Authorization")
        if auth and auth.lower().startswith("bearer "):
            return auth[7:]
        return self.headers.get("x-goog-api-key")

    def _fault(self, fault: Fault, *, gemini: bool) -> None:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.malformed:
            self._send(200, (fault.body or '{"data": [ this is not json').encode(), headers)
            return
        if fault.body is not None:
            self._send(fault.status, fault.body.encode(), headers)
            return
        self._error(fault.status, f"scripted failure {fault.status}", gemini=gemini, headers=headers)

    def _error(self, status: int, message: str, *, gemini: bool, headers: dict[str, str] | None = None) -> None:
        if gemini:
            payload: dict[str, Any] = {
                "error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}
            }
        else:
            payload = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        self._send(status, json.dumps(payload).encode(), headers)

    def _send_events(self, events: list[str]) -> None:
        """Answer 200 with server-sent events (``data: ...``), then close the connection."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {event}\n\n".encode())
            self.wfile.flush()

    def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _responses_input_text(value: Any) -> str:
    """The text of the last user input of a Responses API request (a string, or a list of input items)."""
    if isinstance(value, str):
        return value
    for item in reversed(value or []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return "".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict))
    return ""


def _gemini_text(content: dict[str, Any]) -> str:
    return "".join(str(part.get("text", "")) for part in content.get("parts", []))


def sample_for_schema(schema: dict[str, Any]) -> Any:
    """A minimal JSON value that satisfies a (simple) JSON schema."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower() if kind else "object"
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: sample_for_schema(sub) for name, sub in props.items()}
    if kind == "array":
        return []
    if kind == "string":
        return "sample"
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that closes a stream early is normal; report anything else as usual."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class ProtocolServer:
    """Runs the fake OpenAI + Gemini server on a loopback port in a background thread."""

    def __init__(self, *, default_dim: int = 1536) -> None:
        self.state = ServerState(default_dim=default_dim)
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, name="protocol-server", daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (Gemini base URL)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI SDK's ``base_url``: ``<base>/v1``."""
        return f"{self.base_url}/v1"

    def start(self) -> ProtocolServer:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget requests, faults, scripted replies and overrides."""
        with self.state.lock:
            self.state.faults.clear()
            self.state.replies.clear()
            self.state.stream_cuts.clear()
            self.state.requests.clear()
            self.state.force_dim = None
            self.state.required_key = None

    def fail_next(
        self, n: int = 1, status: int = 500, *, retry_after: str | None = None, body: str | None = None
    ) -> None:
        """Answer the next ``n`` requests with ``status`` (optionally ``Retry-After`` / a raw body)."""
        with self.state.lock:
            self.state.faults.extend(Fault(status=status, retry_after=retry_after, body=body) for _ in range(n))

    def malformed_next(self, n: int = 1, body: str | None = None) -> None:
        """Answer the next ``n`` requests with 200 and a body that is not valid JSON (or ``body``)."""
        with self.state.lock:
            self.state.faults.extend(Fault(status=200, malformed=True, body=body) for _ in range(n))

    def reply_next(self, *texts: str) -> None:
        """Script the content of the next chat / generateContent answers."""
        with self.state.lock:
            self.state.replies.extend(texts)

    def cut_next_stream(self, after: int) -> None:
        """Cut the next streamed answer after ``after`` text pieces (no finish reason, no ``[DONE]``)."""
        with self.state.lock:
            self.state.stream_cuts.append(after)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far."""
        with self.state.lock:
            return list(self.state.requests)

    def requests_to(self, fragment: str) -> list[RecordedRequest]:
        """Requests whose path contains ``fragment``."""
        return [r for r in self.requests if fragment in r.path]


@pytest.fixture(scope="session")
def _protocol_server_session() -> Iterator[ProtocolServer]:
    server = ProtocolServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def protocol_server(_protocol_server_session: ProtocolServer) -> Iterator[ProtocolServer]:
    """The session's protocol server, reset before each test."""
    _protocol_server_session.reset()
    yield _protocol_server_session
    _protocol_server_session.reset()
