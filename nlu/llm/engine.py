"""The LLM interface: stream a reply, score candidate continuations.

Two methods cover everything a call needs: ``stream`` writes the words the
caller hears, ``score`` picks among a closed set (an intent from the
catalogue), so a decision is never parsed out of free text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voicedesk.config import LlmConfig
from voicedesk.errors import ConfigError
from voicedesk.models.prepare import ModelStore

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy, reproducible
    repetition_penalty: float = 1.1


class LLMEngine(Protocol):
    name: str
    model_ref: str

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The model's chat template applied to ``messages``."""
        ...

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[str]:
        """The assistant's reply, piece by piece, as soon as each token is decoded."""
        ...

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Total log-probability of each continuation after ``prompt`` (raw text)."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        ...

    def next_token_logprobs(self, prompt: str) -> np.ndarray:
        """Log-probabilities over the vocabulary for the token after ``prompt``."""
        ...


def choose(engine: LLMEngine, prompt: str, options: Sequence[str]) -> list[float]:
    """Constrained decoding over a closed set of options, in one forward pass.

    The first token of each option is scored from a single distribution;
    options that share a first token are told apart by scoring them whole.
    This is greedy decoding restricted to the set: the option whose first token
    is likeliest wins, and unlike summed whole-option scores it does not favour
    options that happen to be fewer tokens long.

    An engine without the vocabulary in hand (a remote server: ``openai-http``) has
    no ``next_token_logprobs``; its options are scored whole, in one request.
    """
    if not hasattr(engine, "next_token_logprobs"):
        return engine.score(prompt, list(options))
    firsts = [engine.encode(option)[0] for option in options]
    logprobs = engine.next_token_logprobs(prompt)
    scores = [float(logprobs[token]) for token in firsts]
    groups: dict[int, list[int]] = {}
    for index, token in enumerate(firsts):
        groups.setdefault(token, []).append(index)
    for members in groups.values():
        if len(members) > 1:
            for index, full in zip(members, engine.score(prompt, [options[i] for i in members]),
                                   strict=True):
                scores[index] = full
    return scores


def create_engine(config: LlmConfig, models: ModelStore) -> LLMEngine:
    if config.engine == "ctranslate2":
        from nlu.llm.ctranslate2_engine import CTranslate2Engine

        return CTranslate2Engine(models.llm_ct2(config.model, config.compute_type), config)
    if config.engine == "transformers":
        from nlu.llm.transformers_engine import TransformersEngine

        return TransformersEngine(models.llm_hf(config.model), config)
    if config.engine == "openai-http":
        from nlu.llm.openai_http_engine import OpenAIHttpEngine

        return OpenAIHttpEngine(config)  # type: ignore[return-value]  # no vocabulary: see choose
    raise ConfigError(f"unknown llm.engine {config.engine!r}; "
                      "available: ctranslate2, transformers, openai-http")


class IncrementalDecoder:
    """Token ids in, new text out; holds back bytes of an unfinished UTF-8 character."""

    def __init__(self, tokenizer: object) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._emitted = 0

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)  # type: ignore[attr-defined]
        if text.endswith("\ufffd"):
            return ""
        piece, self._emitted = text[self._emitted:], len(text)
        return piece
