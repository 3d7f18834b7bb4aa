"""Card numbers out before a turn is stored (PCI DSS): text, word list, reply and audio.

Other personal data may be stored and redacted later, on the way into a
dataset or an export; a full card number may not be stored at all. A call
writer passes each turn through ``scrub_turn`` before building its
``TurnRecord`` and silences the whole-call recording with the returned
``ranges`` (shifted by the turn's start in that recording). Only card
numbers (Luhn-checked, after a card word, or too long to be anything else) and
card security codes are touched here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from training.data.pii import RedactionPolicy, redact_text
from training.data.silence import redact_words, silence

CARD_ONLY = RedactionPolicy(kinds=frozenset({"card_number"}))


@dataclass
class ScrubbedTurn:
    transcript: str
    words: list[dict[str, Any]]
    reply: str
    samples: np.ndarray
    ranges: list[tuple[float, float]] = field(default_factory=list)  # silenced, turn seconds
    counts: dict[str, int] = field(default_factory=dict)  # {"card_number": n} or {}
    whole_turn_silenced: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.counts)


def scrub_turn(transcript: str, words: list[dict[str, Any]], reply: str,
               samples: np.ndarray, sample_rate: int,
               policy: RedactionPolicy = CARD_ONLY, digits_asked: bool = False
               ) -> ScrubbedTurn:
    """The turn with every card number replaced in text and words and silenced in audio.

    ``counts`` is what goes into the turn's ``redactions`` column. If the
    transcript holds a card number the word times cannot place (no words, or
    words that differ from the text), the caller audio of the whole turn is
    silenced: losing a turn's audio is acceptable, storing a spoken card is not.
    ``digits_asked``: the assistant asked for digits (account number, PIN), so a long
    number with no card word is the answer, not a card (``unclaimed_card_digits``).
    """
    if digits_asked:
        policy = replace(policy, unclaimed_card_digits=None)
    text = redact_text(transcript, policy)
    said = redact_words(words, policy)
    answer = redact_text(reply, policy)
    ranges = list(said.ranges)
    duration = len(samples) / sample_rate if sample_rate else 0.0
    whole = sum(text.counts.values()) > sum(said.counts.values())
    if whole:
        ranges = [(0.0, duration)]
    counts: dict[str, int] = {}
    for kind in set(text.counts) | set(said.counts) | set(answer.counts):
        # the same card in transcript and words is one card; the reply's are its own
        counts[kind] = max(text.counts.get(kind, 0), said.counts.get(kind, 0)) \
            + answer.counts.get(kind, 0)
    scrubbed = silence(samples, sample_rate, ranges) if ranges else samples
    return ScrubbedTurn(text.text, said.words, answer.text, scrubbed, ranges, counts, whole)
