"""An OpenAI-compatible server as the LLM: vLLM, llama.cpp server or Ollama on a GPU machine.

An operator with GPU servers already runs the model there, shared by every call
process; a call then holds no weights and only speaks HTTP. Two endpoints are used:

- ``stream``: ``POST {base_url}/chat/completions`` with ``stream=true``. The
  server applies the model's own chat template and answers with Server-Sent
  Events; each ``choices[0].delta.content`` is handed on as it arrives, so the
  first sentence can be spoken while the rest is still being written.
- ``score``: ``POST {base_url}/completions`` with ``echo=true, logprobs=1``. The
  legacy completions API then returns the log-probability of every token of the
  prompt itself, with each token's character offset (``text_offset``), which is
  what sums a continuation's log-probability. vLLM does this; llama.cpp server
  and Ollama return no prompt log-probabilities, which is reported as such.

The vocabulary stays on the server, so there is no ``encode`` and no
``next_token_logprobs``: ``choose`` scores every option whole, in one request.
Only the standard library is used: three endpoints do not justify a dependency,
and ``http.client`` hands over each event line as soon as it arrives. Proxy
variables (``HTTP_PROXY``) are not consulted: the server is on the operator's
own network. The API key is read from the environment variable that
``llm.api_key_env`` names, sent as a bearer token, and never written into a
message.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from nlu.llm.engine import GenerationOptions, Message
from voicedesk.config import LlmConfig
from voicedesk.errors import ConfigError, ModelError

_DETAIL_CHARS = 200  # of a server's error text quoted in a message
_ERROR_BYTES = 4096  # of an error response's body read to find that text


class HttpStatusError(ModelError):
    """The server answered with an HTTP error; ``status`` lets a caller retry differently."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OpenAIHttpEngine:
    name = "openai-http"

    def __init__(self, config: LlmConfig, environ: Mapping[str, str] | None = None) -> None:
        base = config.base_url.strip().rstrip("/")
        if not base:
            raise ConfigError('llm.base_url is empty; llm.engine = "openai-http" needs the '
                              "server's OpenAI-compatible root, e.g. http://gpu1:8000/v1 "
                              "(or VOICEDESK_LLM_BASE_URL)")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"llm.base_url {base!r} is not an http(s) URL; "
                              "expected e.g. http://gpu1:8000/v1")
        if parts.username or parts.password:
            # The URL is quoted in every error message; a credential in it would be too.
            raise ConfigError(f"llm.base_url for {parts.hostname} holds a user or password; "
                              f"remove it and put the API key in ${config.api_key_env} "
                              "(the variable llm.api_key_env names)")
        if config.timeout_s <= 0:
            raise ConfigError(f"llm.timeout_s = {config.timeout_s} must be above 0 seconds")
        if not config.model.strip():
            raise ConfigError("llm.model is empty; set it to the model name the server lists "
                              f"at {base}/models")
        self.model = config.model
        self.base_url = base
        self.model_ref = f"{config.model} @ {base}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path
        self._timeout = config.timeout_s
        self._key_env = config.api_key_env
        env = os.environ if environ is None else environ
        self._key = env.get(config.api_key_env, "") if config.api_key_env else ""
        self._list_prompts = True  # until the server refuses a list of prompts
        self._check_model()

    # ---- the protocol ------------------------------------------------------------
    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """A plain ChatML rendering, for building raw-text prompts to ``score``.

        The model's real template lives on the server, which applies it in
        ``stream``; ChatML is what Qwen and SmolLM use and what most instruct
        models understand, so a scoring prompt built from it reads as a chat.
        """
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[str]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature,
        }
        if options.repetition_penalty != 1.0:
            # Not OpenAI's frequency_penalty (additive, per count): vLLM's multiplicative
            # penalty, the one the local engines apply. Servers that do not know it ignore it.
            body["repetition_penalty"] = options.repetition_penalty
        url = self.base_url + "/chat/completions"
        with self._exchange("POST", "/chat/completions", body) as response:
            finished = False
            for data in sse_data(response):
                if data.strip() == "[DONE]":
                    return
                chunk = self._decode(data, url)
                if "error" in chunk:
                    raise self._error(f"LLM server {url} stopped the reply: "
                                      f"{_detail(chunk)}; check the server's log")
                choices = chunk.get("choices") or []
                if not choices:
                    continue  # a usage-only chunk
                piece = (choices[0].get("delta") or {}).get("content")
                if piece:
                    yield piece
                finished = finished or bool(choices[0].get("finish_reason"))
        if not finished:
            raise self._error(f"LLM server {url} closed the connection before the reply "
                              "finished; check the server's log")

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Summed log-probabilities of each continuation, all in one request if the
        server takes a list of prompts (vLLM does, and shares the prompt's cache)."""
        texts = [prompt + c for c in continuations]
        if len(texts) > 1 and self._list_prompts:
            try:
                choices = self._complete(texts)
            except HttpStatusError as exc:
                if exc.status not in (400, 422):
                    raise
                self._list_prompts = False  # this server takes one prompt per request
            else:
                if len(choices) == len(texts):
                    return [self._continuation_logprob(choice, text, len(prompt))
                            for choice, text in zip(choices, texts, strict=True)]
                self._list_prompts = False
        return [self._continuation_logprob(self._complete([text])[0], text, len(prompt))
                for text in texts]

    # ---- scoring -----------------------------------------------------------------
    def _complete(self, texts: list[str]) -> list[dict[str, Any]]:
        """One echoing completions request; its choices in prompt order."""
        body = {
            "model": self.model,
            "prompt": texts if len(texts) > 1 else texts[0],
            # One generated token, not zero: every server accepts it, and its offset
            # (at the end of the text) keeps it out of the sum.
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        answer = self._request_json("POST", "/completions", body)
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self._error(f"LLM server {self.base_url}/completions answered without "
                              "choices; check that it is an OpenAI-compatible server")
        return sorted(choices, key=lambda c: c.get("index", 0))

    def _continuation_logprob(self, choice: dict[str, Any], text: str, prompt_len: int) -> float:
        """Sum the log-probabilities of the tokens that hold any of the continuation.

        A token that straddles the boundary (a prompt ending in a space, merged
        with the continuation's first word) counts: it is where the options differ.
        Tokens from ``len(text)`` on are the one generated token.
        """
        logprobs = choice.get("logprobs") or {}
        offsets = logprobs.get("text_offset")
        values = logprobs.get("token_logprobs")
        echoed = choice.get("text")
        if (not isinstance(offsets, list) or not isinstance(values, list) or not offsets
                or len(offsets) != len(values) or not isinstance(echoed, str)
                or not echoed.startswith(text)):
            raise self._error(f"LLM server {self.base_url} does not return prompt logprobs "
                              "(echo=true); use a vLLM server, or llm.engine = \"ctranslate2\"")
        ends = [*offsets[1:], len(echoed)]
        total = 0.0
        for start, end, value in zip(offsets, ends, values, strict=True):
            if start >= len(text):
                break
            if end > prompt_len or start >= prompt_len:
                total += value or 0.0  # None only for the text's very first token
        return total

    # ---- HTTP --------------------------------------------------------------------
    def _check_model(self) -> None:
        """Fail at start-up, not on the first caller's turn, if the server is not there,
        refuses the key, or does not serve the model."""
        listed = self._request_json("GET", "/models", None).get("data")
        if not isinstance(listed, list) or not listed:
            return  # nothing listed to check against: the first request will tell
        served = [str(m.get("id")) for m in listed if isinstance(m, dict)]
        if self.model not in served:
            raise self._error(f"LLM server {self.base_url} does not serve model "
                              f"{self.model!r}; it serves: {', '.join(served)}; "
                              "set llm.model to one of them")

    def _request_json(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        with self._exchange(method, path, body) as response:
            raw = response.read()
        return self._decode(raw.decode("utf-8", errors="replace"), self.base_url + path)

    @contextmanager
    def _exchange(self, method: str, path: str,
                  body: dict[str, Any] | None) -> Iterator[http.client.HTTPResponse]:
        """One request on its own connection, closed on leaving, so that a reply the
        caller interrupts stops generating on the server. Network failures, while
        sending or while reading, become one-line ``ModelError``s."""
        url = self.base_url + path
        connection_class = (http.client.HTTPSConnection if self._https
                            else http.client.HTTPConnection)
        connection = connection_class(self._host, self._port, timeout=self._timeout)
        headers = {"Accept": "text/event-stream" if body and body.get("stream")
                   else "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            connection.request(method, self._path + path,
                               body=None if body is None else json.dumps(body).encode(),
                               headers=headers)
            response = connection.getresponse()
            if response.status >= 400:
                raise self._status_error(url, response.status, response.read(_ERROR_BYTES))
            yield response
        except TimeoutError:
            raise self._error(f"LLM server {url} sent nothing for {self._timeout:g} s; "
                              "check the server's load, or raise llm.timeout_s") from None
        except (ConnectionRefusedError, socket.gaierror) as exc:
            raise self._error(f"LLM server {url} could not be reached ({_describe(exc)}); "
                              "check llm.base_url and that the server is running") from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._error(f"LLM server {url} closed the connection ({_describe(exc)}); "
                              "check the server's log") from None
        finally:
            connection.close()

    def _status_error(self, url: str, status: int, raw: bytes) -> HttpStatusError:
        detail = _detail(raw.decode("utf-8", errors="replace"))
        said = f" ({detail})" if detail else ""
        if status in (401, 403):
            todo = (f"check the key in ${self._key_env}" if self._key else
                    f"put the key in ${self._key_env}")
            text = f"LLM server {url} refused the request (HTTP {status}){said}; {todo} " \
                   "(the variable llm.api_key_env names)"
        elif status == 404:
            text = f"LLM server {url} answered HTTP 404{said}; llm.base_url should be the " \
                   "OpenAI-compatible root, e.g. http://gpu1:8000/v1, and llm.model a model " \
                   "it serves"
        else:
            text = f"LLM server {url} answered HTTP {status}{said}; check the server's log"
        return HttpStatusError(self._one_line(text), status)

    def _decode(self, text: str, url: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise self._error(f"LLM server {url} answered something that is not JSON: "
                              f"{text[:80]!r}; check that llm.base_url is an OpenAI-compatible "
                              "server") from None
        if not isinstance(value, dict):
            raise self._error(f"LLM server {url} answered JSON that is not an object: "
                              f"{text[:80]!r}")
        return value

    def _error(self, text: str) -> ModelError:
        return ModelError(self._one_line(text))

    def _one_line(self, text: str) -> str:
        """Whitespace collapsed, and the key blanked should a server echo it back."""
        text = " ".join(text.split())
        return text.replace(self._key, "***") if self._key else text


def sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """The data of each Server-Sent Event, as soon as the blank line that ends it arrives.

    Comments (``:`` lines, keep-alives) and other fields (``event:``, ``id:``) are
    skipped; an event's several ``data:`` lines are joined with newlines.
    """
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _detail(body: str | dict[str, Any]) -> str:
    """The server's own words about an error, from OpenAI's, vLLM's or FastAPI's shape."""
    value: Any = body
    if isinstance(body, str):
        try:
            value = json.loads(body)
        except json.JSONDecodeError:
            return " ".join(body.split())[:_DETAIL_CHARS]
    if isinstance(value, dict):
        error = value.get("error", value)
        if isinstance(error, dict):
            error = error.get("message", error.get("detail", error))
        value = error if isinstance(error, str) else json.dumps(error)
    return " ".join(str(value).split())[:_DETAIL_CHARS]


def _describe(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
