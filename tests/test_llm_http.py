"""The openai-http engine against a real local HTTP server that speaks the protocol.

The stub is a ``ThreadingHTTPServer`` on 127.0.0.1: chat completions as
Server-Sent Events in chunked transfer encoding (as vLLM's uvicorn sends them),
legacy completions with echoed prompt log-probabilities, and the ways a server
fails. What it tests is the HTTP client's side of the protocol, not a model.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nlu.llm.engine import GenerationOptions, choose, create_engine
from nlu.llm.openai_http_engine import OpenAIHttpEngine
from voicedesk.config import LlmConfig, load_config
from voicedesk.errors import ModelError
from voicedesk.models.prepare import ModelStore

MODEL = "stub-model"
KEY = "sk-stub-0123456789"
MESSAGES = [{"role": "system", "content": "You are a helpful phone agent."},
            {"role": "user", "content": "My internet is down."}]
PIECES = ["Hello", ",", " how", " can I help?"]
PROMPT = "Caller: I want to settle my invoice\nIntent:"
# The stub's "model": a log-probability per token text. Everything else, the prompt's
# words included, is -100, so a prompt token counted by mistake shows at once.
LOGPROBS = {" pay": -0.5, "_": -0.1, "bill": -0.2, " roaming": -3.0, " goodbye": -2.0}
GENERATED = (" the", -50.0)  # the one token max_tokens=1 generates; never counted


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


Route = Callable[["StubHandler", Any], None]


class StubServer(ThreadingHTTPServer):
    """Answers per (method, path) route; records every request it received."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/v1/models"): lambda h, _: h.send_json(200, {
                "object": "list", "data": [{"id": MODEL, "object": "model"}]}),
            ("POST", "/v1/chat/completions"): send_reply_stream,
            ("POST", "/v1/completions"): send_echo_logprobs,
        }
        self.received: list[Received] = []
        self.release = threading.Event()  # the test has the first piece: send the rest
        self.released_in_time: bool | None = None
        self.stop = threading.Event()  # set on teardown: wakes handlers that hang on purpose

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.received if r.path == path]


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StubServer

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.received.append(Received(self.command, self.path, dict(self.headers), body))
        self.server.routes[(self.command, self.path)](self, body)

    def send_json(self, status: int, value: Any) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def send_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def send_event(self, data: str) -> None:
        self.send_chunk(f"data: {data}\n\n".encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


def delta(content: str | None, finish: str | None = None) -> str:
    return json.dumps({"object": "chat.completion.chunk", "model": MODEL, "choices": [
        {"index": 0, "delta": {} if content is None else {"content": content},
         "finish_reason": finish}]})


def send_reply_stream(handler: StubHandler, _: Any) -> None:
    """A role chunk, the first piece, a pause until the test has read it, then the rest."""
    handler.start_events()
    handler.send_event(json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"},
                                                "finish_reason": None}]}))
    handler.send_event(delta(PIECES[0]))
    handler.server.released_in_time = handler.server.release.wait(timeout=5)
    handler.send_chunk(b": keep-alive comment\n\n")
    for piece in PIECES[1:-1]:
        handler.send_event(delta(piece))
    handler.send_event(delta(PIECES[-1], finish="stop"))
    handler.send_event(json.dumps({"choices": [], "usage": {"completion_tokens": 4}}))
    handler.send_event("[DONE]")
    handler.send_chunk(b"")


def tokens(text: str) -> list[str]:
    return re.findall(r" ?[A-Za-z]+| ?[0-9]+| ?[^A-Za-z0-9\s]|\s+", text)


def echo_choice(index: int, text: str) -> dict[str, Any]:
    """What vLLM answers for echo=true, logprobs=1, max_tokens=1."""
    pieces = [*tokens(text), GENERATED[0]]
    offsets, at = [], 0
    for piece in pieces:
        offsets.append(at)
        at += len(piece)
    values: list[float | None] = [LOGPROBS.get(p, -100.0) for p in pieces[:-1]]
    values[0] = None  # nothing precedes the first token
    return {"index": index, "text": text + GENERATED[0], "finish_reason": "length",
            "logprobs": {"tokens": pieces, "token_logprobs": [*values, GENERATED[1]],
                         "text_offset": offsets, "top_logprobs": None}}


def send_echo_logprobs(handler: StubHandler, body: Any) -> None:
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    handler.send_json(200, {"object": "text_completion", "model": MODEL,
                            "choices": [echo_choice(i, p) for i, p in enumerate(prompts)]})


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def make_engine(stub: StubServer, timeout_s: float = 5.0) -> OpenAIHttpEngine:
    config = LlmConfig(engine="openai-http", model=MODEL, base_url=stub.url,
                       api_key_env="STUB_API_KEY", timeout_s=timeout_s)
    return OpenAIHttpEngine(config, environ={"STUB_API_KEY": KEY})


def assert_one_line(error: pytest.ExceptionInfo[ModelError]) -> str:
    message = str(error.value)
    assert "\n" not in message and KEY not in message
    return message


# ---- streaming ---------------------------------------------------------------------
def test_stream_yields_each_piece_as_it_arrives(stub: StubServer) -> None:
    reply = make_engine(stub).stream(MESSAGES, GenerationOptions(max_new_tokens=12))
    first = next(reply)  # the server holds the rest back until the test has this piece
    stub.release.set()
    assert first == PIECES[0]
    assert [first, *reply] == PIECES
    assert stub.released_in_time is True


def test_stream_sends_model_messages_and_generation_options(stub: StubServer) -> None:
    stub.release.set()
    list(make_engine(stub).stream(MESSAGES, GenerationOptions(max_new_tokens=12,
                                                              temperature=0.3)))
    (body,) = stub.bodies("/v1/chat/completions")
    assert body == {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 12,
                    "temperature": 0.3, "repetition_penalty": 1.1}
    request = next(r for r in stub.received if r.path == "/v1/chat/completions")
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Accept"] == "text/event-stream"


def test_stream_leaves_out_repetition_penalty_when_it_is_off(stub: StubServer) -> None:
    stub.release.set()
    list(make_engine(stub).stream(MESSAGES, GenerationOptions(repetition_penalty=1.0)))
    (body,) = stub.bodies("/v1/chat/completions")
    assert "repetition_penalty" not in body and "frequency_penalty" not in body


# ---- scoring -----------------------------------------------------------------------
def test_score_sums_only_the_continuations_tokens(stub: StubServer) -> None:
    scores = make_engine(stub).score(PROMPT, [" pay_bill", " roaming"])
    assert scores == pytest.approx([-0.5 - 0.1 - 0.2, -3.0])


def test_score_sends_every_continuation_in_one_echo_request(stub: StubServer) -> None:
    make_engine(stub).score(PROMPT, [" pay_bill", " roaming", " goodbye"])
    (body,) = stub.bodies("/v1/completions")
    assert body["model"] == MODEL
    assert body["prompt"] == [PROMPT + " pay_bill", PROMPT + " roaming", PROMPT + " goodbye"]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] <= 1


def test_score_counts_a_token_that_straddles_the_prompts_end(stub: StubServer) -> None:
    # "Intent: " + "pay_bill": the space is the prompt's, the token " pay" holds both.
    assert make_engine(stub).score(PROMPT + " ", ["pay_bill"]) == pytest.approx([-0.8])


def test_score_sends_one_prompt_per_request_when_a_list_is_refused(stub: StubServer) -> None:
    def one_prompt_only(handler: StubHandler, body: Any) -> None:
        if isinstance(body["prompt"], list):
            handler.send_json(400, {"error": {"message": "prompt must be a string"}})
        else:
            send_echo_logprobs(handler, body)

    stub.routes[("POST", "/v1/completions")] = one_prompt_only
    engine = make_engine(stub)
    assert engine.score(PROMPT, [" pay_bill", " roaming"]) == pytest.approx([-0.8, -3.0])
    assert engine.score(PROMPT, [" goodbye", " roaming"]) == pytest.approx([-2.0, -3.0])
    sent = [body["prompt"] for body in stub.bodies("/v1/completions")]
    assert sent == [[PROMPT + " pay_bill", PROMPT + " roaming"], PROMPT + " pay_bill",
                    PROMPT + " roaming", PROMPT + " goodbye", PROMPT + " roaming"]


def test_score_says_when_the_server_returns_no_prompt_logprobs(stub: StubServer) -> None:
    stub.routes[("POST", "/v1/completions")] = lambda h, body: h.send_json(200, {
        "choices": [{"index": 0, "text": " pay_bill", "logprobs": None}]})  # as Ollama does
    with pytest.raises(ModelError) as error:
        make_engine(stub).score(PROMPT, [" pay_bill"])
    message = assert_one_line(error)
    assert "does not return prompt logprobs (echo=true)" in message and stub.url in message


def test_choose_falls_back_to_whole_option_scores(stub: StubServer) -> None:
    engine = make_engine(stub)
    assert not hasattr(engine, "next_token_logprobs")
    options = [" roaming", " pay_bill", " goodbye"]
    scores = choose(engine, PROMPT, options)
    assert options[scores.index(max(scores))] == " pay_bill"
    assert len(stub.bodies("/v1/completions")) == 1


# ---- failures ----------------------------------------------------------------------
def test_a_server_error_is_one_line_naming_the_url(stub: StubServer) -> None:
    stub.routes[("POST", "/v1/chat/completions")] = lambda h, _: h.send_json(500, {
        "error": {"message": "CUDA out of memory.\nTried to allocate 2.00 GiB"}})
    with pytest.raises(ModelError) as error:
        list(make_engine(stub).stream(MESSAGES, GenerationOptions()))
    message = assert_one_line(error)
    assert f"{stub.url}/chat/completions" in message
    assert "HTTP 500" in message and "CUDA out of memory. Tried" in message


def test_a_connection_closed_mid_reply_is_a_model_error(stub: StubServer) -> None:
    def cut(handler: StubHandler, _: Any) -> None:
        handler.start_events()
        handler.send_event(delta("Hello"))
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True

    stub.routes[("POST", "/v1/chat/completions")] = cut
    pieces = []
    with pytest.raises(ModelError) as error:
        for piece in make_engine(stub).stream(MESSAGES, GenerationOptions()):
            pieces.append(piece)
    assert pieces == ["Hello"]
    assert "closed the connection" in assert_one_line(error)


def test_a_connection_closed_before_an_answer_is_a_model_error(stub: StubServer) -> None:
    def hang_up(handler: StubHandler, _: Any) -> None:
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True

    stub.routes[("POST", "/v1/completions")] = hang_up
    with pytest.raises(ModelError) as error:
        make_engine(stub).score(PROMPT, [" pay_bill"])
    message = assert_one_line(error)
    assert f"{stub.url}/completions" in message and "closed the connection" in message


def test_a_silent_server_times_out_as_a_model_error(stub: StubServer) -> None:
    stub.routes[("POST", "/v1/chat/completions")] = lambda h, _: h.server.stop.wait(10)
    engine = make_engine(stub, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ModelError) as error:
        list(engine.stream(MESSAGES, GenerationOptions()))
    assert time.monotonic() - started < 3
    message = assert_one_line(error)
    assert "sent nothing for 0.3 s" in message and "llm.timeout_s" in message


def test_a_refused_key_names_its_variable_and_never_the_key(stub: StubServer) -> None:
    stub.routes[("POST", "/v1/completions")] = lambda h, _: h.send_json(401, {
        "error": {"message": f"invalid key {h.headers['Authorization']}"}})
    with pytest.raises(ModelError) as error:
        make_engine(stub).score(PROMPT, [" pay_bill"])
    message = assert_one_line(error)
    assert "HTTP 401" in message and "$STUB_API_KEY" in message and "***" in message


def test_an_unreachable_server_fails_at_start_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    config = LlmConfig(engine="openai-http", model=MODEL, base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ModelError, match=r"could not be reached.*llm\.base_url"):
        OpenAIHttpEngine(config, environ={})


def test_a_model_the_server_does_not_serve_fails_at_start_up(stub: StubServer) -> None:
    config = LlmConfig(engine="openai-http", model="llama-70b", base_url=stub.url)
    with pytest.raises(ModelError, match=f"does not serve model 'llama-70b'; it serves: {MODEL}"):
        OpenAIHttpEngine(config, environ={})


# ---- configuration -----------------------------------------------------------------
def test_create_engine_picks_it_from_the_configuration(stub: StubServer, tmp_path: Path) -> None:
    config = load_config(environ={"VOICEDESK_HOME": str(tmp_path),
                                  "VOICEDESK_LLM_ENGINE": "openai-http",
                                  "VOICEDESK_LLM_MODEL": MODEL,
                                  "VOICEDESK_LLM_BASE_URL": stub.url + "/",
                                  "VOICEDESK_LLM_TIMEOUT_S": "7.5"})
    engine = create_engine(config.llm, ModelStore(config.models_dir))
    assert isinstance(engine, OpenAIHttpEngine)
    assert engine.name == "openai-http" and engine.model_ref == f"{MODEL} @ {stub.url}"
    assert [r.path for r in stub.received] == ["/v1/models"]  # checked at start-up
