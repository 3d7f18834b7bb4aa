"""Redaction in the word list and the audio: the redacted words become one placeholder
word, and their stretch of audio becomes silence.

The words are searched as their own text (joined with spaces), not mapped from
the transcript: a reviewer's corrected transcript has no times, and Whisper's
words and text can differ in punctuation. When the transcript holds personal
data that the words do not locate, the caller's audio cannot be trusted to be
clean, so the whole turn is silenced rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.data.pii import RedactionPolicy, find_pii


@dataclass
class RedactedWords:
    words: list[dict[str, Any]]
    ranges: list[tuple[float, float]] = field(default_factory=list)  # seconds, padded
    counts: dict[str, int] = field(default_factory=dict)


def redact_words(words: list[dict[str, Any]], policy: RedactionPolicy | None = None
                 ) -> RedactedWords:
    """Merge each run of redacted words into one placeholder word and note its time."""
    policy = policy or RedactionPolicy()
    texts = [str(w.get("word", "")).strip() for w in words]
    starts, pos = [], 0
    for text in texts:
        starts.append(pos)
        pos += len(text) + 1
    spans = find_pii(" ".join(texts), policy)
    if not spans:
        return RedactedWords([dict(w) for w in words])
    out: list[dict[str, Any]] = []
    ranges: list[tuple[float, float]] = []
    counts: dict[str, int] = {}
    i = 0
    for span in spans:
        hit = [j for j in range(len(words))
               if starts[j] < span.end and span.start < starts[j] + len(texts[j])]
        out += [dict(w) for w in words[i:hit[0]]]
        first, last = words[hit[0]], words[hit[-1]]
        start, end = float(first["start"]), float(last["end"])
        out.append({"word": policy.mark(span.kind), "start": start, "end": end,
                    "probability": min(float(words[j].get("probability", 1.0)) for j in hit),
                    "redacted": span.kind})
        ranges.append((max(0.0, start - policy.audio_padding_s), end + policy.audio_padding_s))
        counts[span.kind] = counts.get(span.kind, 0) + 1
        i = hit[-1] + 1
    out += [dict(w) for w in words[i:]]
    return RedactedWords(out, ranges, counts)


def silence(samples: np.ndarray, rate: int, ranges: list[tuple[float, float]],
            offset_s: float = 0.0) -> np.ndarray:
    """A copy with every range (seconds, shifted by ``offset_s``) set to exact zeros."""
    out = np.array(samples, dtype=np.float32, copy=True)
    for start, end in ranges:
        a = max(0, int(np.floor((start + offset_s) * rate)))
        b = min(len(out), int(np.ceil((end + offset_s) * rate)))
        if b > a:
            out[a:b] = 0.0
    return out


def silenced_seconds(ranges: list[tuple[float, float]], duration_s: float) -> float:
    """How much audio the ranges cover, overlaps counted once, clipped to the audio."""
    total, reach = 0.0, 0.0
    for start, end in sorted((max(0.0, a), min(duration_s, b)) for a, b in ranges):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total
