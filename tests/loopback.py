"""Real HTTP servers on loopback for the openai backend's failure paths.

`silent_server` accepts connections and never answers (a hung model server);
`scripted_server` answers the OpenAI routes with the responses a test lists, in order
(a 500 before a good answer, a 200 whose content is broken JSON, vLLM's 404 for an
unknown model). Both run in a thread of the test process and stop when the block ends.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """Yields (base URL, accepted connections): every connection is held open and never answered."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def chat_completion(content: str, *, model: str = "served-model", prompt_tokens: int = 11, completion_tokens: int = 7):
    """A 200 chat-completion body as OpenAI-compatible servers send it."""
    return 200, {
        "id": "chatcmpl-1", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


@dataclass
class Script:
    responses: list[tuple[int, dict]]  # answers to POST /v1/chat/completions, in order; the last repeats
    served: list[str] = field(default_factory=lambda: ["served-model"])  # GET /v1/models
    requests: list[dict] = field(default_factory=list)  # the JSON bodies received


@contextmanager
def scripted_server(script: Script) -> Iterator[str]:
    """Yields the base URL of an OpenAI-compatible server that plays `script`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in script.served]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append(body)
            index = min(len(script.requests), len(script.responses)) - 1
            self._send(*script.responses[index])

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
