"""Text in pieces, sentences out: TTS can speak each one as soon as it is complete."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class SentenceChunker:
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


def split_sentences(text: str) -> list[str]:
    chunker = SentenceChunker()
    sentences = chunker.push(text)
    rest = chunker.flush()
    return sentences + ([rest] if rest else [])
