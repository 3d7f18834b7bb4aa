"""What speech recognition produces: small immutable records, times in seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Whisper invents text on silence. Its own no-speech estimate, paired with a low average
# log-probability, is the documented test (openai-whisper's transcribe uses the same pair);
# every backend drops such segments with these thresholds.
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0


def is_silence(no_speech_prob: float, avg_logprob: float) -> bool:
    return no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOGPROB_FLOOR


def says_nothing(text: str) -> bool:
    """Text without a letter or digit: the "." Whisper may write for a silent window."""
    return not any(ch.isalnum() for ch in text)


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...] = ()
    language: str = "en"
    duration: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in self.segments for w in s.words)

    @property
    def confidence(self) -> float:
        """Mean word probability, or exp(mean log-prob) without word times; 0 if empty."""
        words = self.words
        if words:
            return sum(w.probability for w in words) / len(words)
        if self.segments:
            return math.exp(sum(s.avg_logprob for s in self.segments) / len(self.segments))
        return 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "language": self.language,
            "confidence": round(self.confidence, 4),
            "words": [
                {"start": round(w.start, 3), "end": round(w.end, 3), "word": w.text.strip(),
                 "probability": round(w.probability, 4)}
                for w in self.words
            ],
        }
