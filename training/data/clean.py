"""Which turns are fit to learn from: not empty, not garbled, not a repeat, ASR sure enough.

Cleaning is a filter, not a deletion: the store keeps every turn (it is the
record of the call), and each consumer (the review queue, a dataset build)
applies the same rules and reports what it left out and why. Rules are run in
a fixed order and a turn is dropped for the first one it fails, so the
counts add up to the number dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from training.data.labels import TurnView

REASONS = ("empty", "garbled", "duplicate", "low_confidence", "too_short", "too_long")

# Whisper's stock inventions on silence and noise (openai/whisper discussions #928, #1606).
# Only phrases no caller says to a phone line: "thank you" alone is a real turn.
HALLUCINATIONS = {"thanks for watching", "thank you for watching", "please subscribe",
                  "subtitles by the amara org community", "like and subscribe"}
_WORD = re.compile(r"[a-z0-9']+|\[[a-z_]+\]")


@dataclass(frozen=True)
class CleaningOptions:
    min_asr_confidence: float = 0.4  # mean word probability; reviewed transcripts are exempt
    min_words: int = 1
    max_words: int = 120
    drop_duplicates: bool = True  # the same words again in the same call, or the same audio
    max_repeat_share: float = 0.5  # a word or bigram filling more than this is a loop
    min_letter_share: float = 0.5  # letters and digits among non-space characters


@dataclass
class CleaningReport:
    kept: list[TurnView] = field(default_factory=list)
    dropped: dict[int, str] = field(default_factory=dict)  # turn id -> reason

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(self.dropped.values())
        return {reason: counts.get(reason, 0) for reason in REASONS}

    def to_json(self) -> dict[str, Any]:
        return {"turns": len(self.kept) + len(self.dropped), "kept": len(self.kept),
                "dropped": len(self.dropped), "reasons": self.counts}


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def clean(turns: list[TurnView], options: CleaningOptions | None = None) -> CleaningReport:
    """Split turns into kept and dropped (with the first reason each fails)."""
    options = options or CleaningOptions()
    report = CleaningReport()
    seen_text: set[tuple[str, str]] = set()
    seen_audio: set[str] = set()
    for view in turns:
        reason = _reason(view, options)
        if reason is None and options.drop_duplicates:
            key = (view.call_id, " ".join(words_of(view.transcript)))
            if key in seen_text or view.caller_audio_sha256 in seen_audio:
                reason = "duplicate"
            seen_text.add(key)
            if view.caller_audio_sha256:
                seen_audio.add(view.caller_audio_sha256)
        if reason is None:
            report.kept.append(view)
        else:
            report.dropped[view.turn_id] = reason
    return report


def _reason(view: TurnView, options: CleaningOptions) -> str | None:
    text = view.transcript.strip()
    words = words_of(text)
    if not words:
        return "empty"
    if _garbled(text, words, options):
        return "garbled"
    if "transcript" not in view.reviewed and view.asr_confidence < options.min_asr_confidence:
        return "low_confidence"
    if len(words) < options.min_words:
        return "too_short"
    if len(words) > options.max_words:
        return "too_long"
    return None


def _garbled(text: str, words: list[str], options: CleaningOptions) -> bool:
    """Not language: symbol soup, a decoding loop, or a stock silence hallucination."""
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalnum() for c in visible)
    if visible and letters / len(visible) < options.min_letter_share:
        return True
    if " ".join(words) in HALLUCINATIONS:
        return True
    if len(words) >= 6:
        for n in (1, 2, 3):
            grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
            top = grams.most_common(1)[0][1]
            if top * n / len(words) > options.max_repeat_share and top >= 4:
                return True
    return False
