"""The reply: the LLM writes the words for the recognised intent, streamed by sentence."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from nlu.domain import DomainPack
from nlu.llm.engine import GenerationOptions, LLMEngine, Message

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class SentenceChunker:
    """Text pieces in, whole sentences out: TTS speaks each as soon as it is complete."""

    def __init__(self) -> None:
        self._buffer = ""

    def push(self, piece: str) -> list[str]:
        self._buffer += piece
        parts = _SENTENCE_END.split(self._buffer)
        self._buffer = parts.pop()
        return [p.strip() for p in parts if p.strip()]

    def flush(self) -> str:
        rest, self._buffer = self._buffer.strip(), ""
        return rest


class Responder:
    def __init__(self, llm: LLMEngine, domain: DomainPack, options: GenerationOptions,
                 max_sentences: int = 2) -> None:
        self.llm = llm
        self.domain = domain
        self.options = options
        self.max_sentences = max_sentences

    def messages(self, intent: str, text: str, history: Sequence[Message]) -> list[Message]:
        spec = self.domain.intents.get(intent) or self.domain.intents["out_of_scope"]
        system = self.domain.prompt("reply_system", intent_description=spec.description,
                                    example_reply=spec.reply)
        return [{"role": "system", "content": system}, *history,
                {"role": "user", "content": text.strip()}]

    def sentences(self, intent: str, text: str, history: Sequence[Message]) -> Iterator[str]:
        """Reply sentences as the LLM completes them, at most ``max_sentences``.

        A trailing fragment cut off by the token limit is dropped rather than
        spoken half-finished.
        """
        chunker = SentenceChunker()
        said = 0
        for piece in self.llm.stream(self.messages(intent, text, history), self.options):
            for sentence in chunker.push(piece):
                yield sentence
                said += 1
                if said >= self.max_sentences:
                    return
        rest = chunker.flush()
        if rest and (rest[-1] in ".!?" or said == 0):
            yield rest
