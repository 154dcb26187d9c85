"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1.

Tests drive the real `openai` client against it. The server answers each POST to
`/v1/chat/completions` with the next item of a script; an item is either a fixed
reply, a fault (HTTP status, dropped connection, malformed body, delay), or a
function of the request (so a scripted teacher can react to tool results, e.g.
read a video id out of them). Every request body is recorded for assertions.

Standard library only (`http.server` in a daemon thread): no fake of the client,
the bytes go over a real socket.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """A normal completion: assistant text and/or tool calls.

    `tool_calls` holds `(name, arguments)` pairs; `arguments` is a dict (sent as
    JSON) or a raw string (sent verbatim, to test invalid JSON).
    """

    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    delay_s: float = 0.0
    finish_reason: str | None = None


@dataclass
class Status:
    """An HTTP error status with an OpenAI-style error body."""

    code: int = 500
    message: str = "scripted server error"


@dataclass
class Drop:
    """Read the request, then close the connection without answering."""


@dataclass
class Malformed:
    """HTTP 200 with a body that is not valid JSON (or not a completion)."""

    body: str = '{"id": "x", "choices": [ {"message": '


@dataclass
class Delay:
    """Wait, then answer with `then` (a client with a shorter timeout gives up first)."""

    seconds: float
    then: Reply = field(default_factory=lambda: Reply(content="late"))


ScriptItem = Reply | Status | Drop | Malformed | Delay | Callable[[dict[str, Any]], Any]


class ScriptedServer:
    """Serve `script` items in order, one per chat-completion request.

    Use as a context manager; `base_url` is what the OpenAI client needs.
    When the script runs out, every further request gets HTTP 500 and
    `exhausted_hits` counts them, so a test can assert the agent stopped in time.
    """

    def __init__(self, script: Iterable[ScriptItem] = ()) -> None:
        self._script: list[ScriptItem] = list(script)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.exhausted_hits = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (and so each test) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # wakes handlers sleeping in a Delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def extend(self, items: Iterable[ScriptItem]) -> None:
        with self._lock:
            self._script.extend(items)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    # -- serving ---------------------------------------------------------------

    def _next_item(self, request: dict[str, Any], headers: dict[str, str]) -> ScriptItem | None:
        with self._lock:
            self.requests.append(request)
            self.headers.append(headers)
            if not self._script:
                self.exhausted_hits += 1
                return None
            return self._script.pop(0)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                request = json.loads(raw)
                item = server._next_item(request, {k.lower(): v for k, v in self.headers.items()})
                if callable(item) and not isinstance(item, type):
                    item = item(request)
                self._answer(item, request)

            def _answer(self, item: Any, request: dict[str, Any]) -> None:
                if item is None:
                    self._send_json(500, {"error": {"message": "script exhausted"}})
                elif isinstance(item, Delay):
                    if server._stop.wait(item.seconds):
                        return
                    self._answer(item.then, request)
                elif isinstance(item, Reply):
                    if item.delay_s and server._stop.wait(item.delay_s):
                        return
                    self._send_json(200, completion(item, request.get("model", "scripted")))
                elif isinstance(item, Status):
                    self._send_json(item.code, {"error": {"message": item.message}})
                elif isinstance(item, Drop):
                    # No status line at all: the client sees the connection close.
                    self.close_connection = True
                elif isinstance(item, Malformed):
                    self._send_bytes(200, item.body.encode(), "application/json")
                else:
                    raise TypeError(f"unknown script item {item!r}")

            def _send_json(self, code: int, body: dict[str, Any]) -> None:
                self._send_bytes(code, json.dumps(body).encode(), "application/json")

            def _send_bytes(self, code: int, data: bytes, ctype: str) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left; nothing to answer

        return Handler


_counter = iter(range(1, 1 << 62))


def completion(reply: Reply, model: str) -> dict[str, Any]:
    """The JSON body of a chat completion for `reply`, as an OpenAI server sends it."""
    tool_calls = []
    for name, args in reply.tool_calls:
        n = next(_counter)
        tool_calls.append(
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    finish = reply.finish_reason or ("tool_calls" if tool_calls else "stop")
    text_len = len(reply.content or "")
    return {
        "id": f"chatcmpl-{next(_counter)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 1 + text_len // 4,
            "total_tokens": 11 + text_len // 4,
        },
    }


def last_tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool-result messages after the last assistant turn, JSON-decoded when possible."""
    out: list[dict[str, Any]] = []
    for msg in reversed(request["messages"]):
        if msg["role"] == "assistant":
            break
        if msg["role"] == "tool":
            content = msg["content"]
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content)
            try:
                out.append(json.loads(content))
            except json.JSONDecodeError:
                out.append({"raw": content})
    return list(reversed(out))
