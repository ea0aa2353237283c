"""OpenAICompatibleGenerator against a real HTTP server on 127.0.0.1.

The server stands in for vLLM/TGI/Ollama/a hosted API (outside our control): it speaks the
chat-completions protocol over real sockets, and the last user message tells it how to
misbehave (``status:<code>``, ``status-once:<code>``; ``together:<n>`` answers once n such
requests are in flight at once, HTTP 500 if they never are; ``hang`` answers only when the
test releases it)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ragops_models.generation import Generation
from ragops_models.openai_generator import GenerationBackendError, OpenAICompatibleGenerator

API_KEY = "test-key-123"
MODEL = "test-model"


@dataclass
class ServerState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    failed_once: set[str] = field(default_factory=set)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    together: threading.Barrier = field(default_factory=lambda: threading.Barrier(3, timeout=10))
    released: threading.Event = field(default_factory=threading.Event)

    def attempts(self, content: str) -> int:
        with self.lock:
            return sum(1 for body in self.requests if body["messages"][-1]["content"] == content)


class Handler(BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out and left
            self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._reply(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._reply(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        state = self.state
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with state.lock:
            state.requests.append(body)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if self.path != "/v1/chat/completions":
                self._reply(404, {"error": {"message": "not found"}})
                return
            if self.headers.get("authorization") != f"Bearer {API_KEY}":
                self._reply(401, {"error": {"message": "invalid api key"}})
                return
            question = body["messages"][-1]["content"]
            command, _, argument = question.partition(":")
            if command == "status":
                self._reply(int(argument), {"error": {"message": f"forced {argument}"}})
                return
            if command == "status-once":
                with state.lock:
                    first = question not in state.failed_once
                    state.failed_once.add(question)
                if first:
                    self._reply(int(argument), {"error": {"message": "try again"}}, {"retry-after": "0"})
                    return
            if command == "together":
                try:
                    state.together.wait()
                except threading.BrokenBarrierError:
                    self._reply(500, {"error": {"message": "the requests never were in flight together"}})
                    return
            if command == "hang":
                state.released.wait(30)
            prompt_tokens = sum(len(message["content"].split()) for message in body["messages"])
            length = question.startswith("long")
            self._reply(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"  answer to {question}  "},
                            "finish_reason": "length" if length else "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": body["max_tokens"] if length else 4,
                        "total_tokens": prompt_tokens + 4,
                    },
                },
            )
        finally:
            with state.lock:
                state.in_flight -= 1


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    handler = type("BoundHandler", (Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer from the context."}, {"role": "user", "content": question}]


def make(base_url: str, **options: Any) -> OpenAICompatibleGenerator:
    options = {"api_key": API_KEY, "max_new_tokens": 16, "retry_backoff_s": 0.01, **options}
    return OpenAICompatibleGenerator(base_url, MODEL, **options)


def test_batch_is_sent_concurrently_and_usage_is_mapped(server: tuple[str, ServerState]) -> None:
    base_url, state = server
    generator = make(base_url, concurrency=4)
    generator.warm_up()
    questions = ["together:3", "together:3 two", "together:3 three", "long question"]
    generations = generator.generate([chat(q) for q in questions])
    generator.close()

    assert [g.text for g in generations] == [f"answer to {q}" for q in questions]
    assert all(isinstance(g, Generation) for g in generations)
    assert generations[0] == Generation(
        text="answer to together:3", input_tokens=5, output_tokens=4, finish_reason="stop"
    )
    assert generations[3].finish_reason == "length" and generations[3].output_tokens == 16
    # The three "together" requests were answered only once all three were in flight.
    assert state.max_in_flight >= 3
    body = state.requests[0]
    assert (
        body["model"] == MODEL and body["max_tokens"] == 16 and body["temperature"] == 0.0 and body["stream"] is False
    )
    assert {h["authorization"] for h in state.headers} == {f"Bearer {API_KEY}"}
    assert generator.model_name == MODEL
    assert generator.model_version == f"{MODEL}@{base_url.split('/')[2]}"


def test_client_error_fails_at_once(server: tuple[str, ServerState]) -> None:
    base_url, state = server
    generator = make(base_url, max_retries=3)
    with pytest.raises(GenerationBackendError, match="HTTP 400") as caught:
        generator.generate([chat("fine"), chat("status:400")])
    assert caught.value.status_code == 400
    assert state.attempts("status:400") == 1
    generator.close()


def test_wrong_api_key_is_refused(server: tuple[str, ServerState]) -> None:
    base_url, _ = server
    generator = make(base_url, api_key="wrong")
    with pytest.raises(GenerationBackendError, match="HTTP 401") as caught:
        generator.generate([chat("hello")])
    assert caught.value.status_code == 401


def test_server_error_is_retried_then_succeeds(server: tuple[str, ServerState]) -> None:
    base_url, state = server
    generator = make(base_url, max_retries=2)
    [generation] = generator.generate([chat("status-once:503")])
    assert generation.text == "answer to status-once:503"
    assert state.attempts("status-once:503") == 2
    generator.close()


def test_persistent_server_error_gives_up_after_the_retries(server: tuple[str, ServerState]) -> None:
    base_url, state = server
    generator = make(base_url, max_retries=2)
    with pytest.raises(GenerationBackendError, match="HTTP 500") as caught:
        generator.generate([chat("status:500")])
    assert caught.value.status_code == 500
    assert state.attempts("status:500") == 3
    generator.close()


def test_timeout_is_retried_then_raised(server: tuple[str, ServerState]) -> None:
    base_url, state = server
    generator = make(base_url, timeout_s=0.2, max_retries=1)
    try:
        with pytest.raises(GenerationBackendError, match="after 2 attempts") as caught:
            generator.generate([chat("hang")])
        # Given up while the server still held both requests: no answer was waited for.
        with state.lock:
            assert state.in_flight == 2
    finally:
        state.released.set()
    assert caught.value.status_code is None
    assert state.attempts("hang") == 2
    generator.close()


def test_unreachable_server_fails_warm_up() -> None:
    generator = OpenAICompatibleGenerator(
        "http://127.0.0.1:9/v1", MODEL, max_retries=1, retry_backoff_s=0.01, timeout_s=1
    )
    with pytest.raises(GenerationBackendError, match=r"GET http://127.0.0.1:9/v1/models failed"):
        generator.warm_up()


def test_invalid_input_is_refused(server: tuple[str, ServerState]) -> None:
    base_url, _ = server
    generator = make(base_url)
    with pytest.raises(ValueError):
        generator.generate([])
    with pytest.raises(ValueError):
        generator.generate([[]])
    with pytest.raises(ValueError):
        OpenAICompatibleGenerator(base_url, MODEL, concurrency=0)
    assert make(base_url, model_version="rev-abc").model_version == "rev-abc"


def test_stop_sequences_are_sent_as_the_requests_stop(server: tuple[str, ServerState]) -> None:
    base_url, state = server
    for stop, expected in ((["\n", "Question:"], ["\n", "Question:"]), ([], None)):
        generator = make(base_url, stop=stop)
        generator.generate([chat("short")])
        generator.close()
        assert state.requests[-1].get("stop") == expected
