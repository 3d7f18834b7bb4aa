"""LocalAgreement-2: which words of a re-transcribed audio buffer are safe to show as final.

Whisper is not a streaming model: every pass over the growing buffer may
rewrite any word of the previous pass, most often the last ones, whose audio
was cut mid-word. The policy of whisper_streaming (Macháček et al. 2023) is
to confirm only what two successive passes agree on: the longest common
prefix of the last two hypotheses, past what was confirmed before. Confirmed
words are never taken back, so a caller of the stream can act on them.

This module is the policy alone, with no model and no audio, so it can be
read and tested by itself (it is whisper_streaming's ``HypothesisBuffer``).
Words carry times on one absolute clock (the stream's), which is what lets
a pass over a trimmed buffer be lined up with what was confirmed before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from asr.transcript import Word

# Only a new pass whose first word lies this close to the last confirmed word is
# checked for repeating the confirmed tail (Whisper re-hears the words at the cut).
REPEAT_WINDOW_S = 1.0
# Longest run of confirmed words that a new pass may repeat at its start.
MAX_REPEAT = 5

_NOT_WORD = re.compile(r"[^\w']+")


def word_key(text: str) -> str:
    """What two passes must agree on: the word itself, not its case or punctuation.

    Successive passes often differ only in "bill," against "bill." because the
    next sentence is not yet heard; waiting for the punctuation to settle
    would delay every word before a pause by one more pass.
    """
    key = _NOT_WORD.sub("", text.casefold())
    return key or text.strip()


def join_words(words: Sequence[Word]) -> str:
    """Words as text, spaced as Whisper spaced them.

    A Whisper word carries its leading space; a piece without one continues
    the word before it ("flour" + "-fattened"), so words are joined as they are.
    """
    return "".join(w.text for w in words).strip()


class LocalAgreement:
    """Confirmed words so far plus the last pass's unconfirmed tail, for one turn.

    ``insert`` takes each new hypothesis (all words of a pass over the current
    buffer) and returns the words it newly confirms. ``trim`` tells the policy
    that the buffer now starts at a later time: the confirmed words before it
    leave the buffer and become the prompt for later passes.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._confirmed: list[Word] = []
        self._tentative: list[Word] = []
        self._buffer_start = 0.0
        self._last_start = float("-inf")  # start of the last confirmed word
        self._last_end = 0.0  # and its end

    @property
    def confirmed(self) -> tuple[Word, ...]:
        return tuple(self._confirmed)

    @property
    def tentative(self) -> tuple[Word, ...]:
        """The last pass's words past the confirmed ones: shown, but may still change."""
        return tuple(self._tentative)

    @property
    def last_confirmed_end(self) -> float:
        return self._last_end

    def confirmed_before(self, time: float) -> tuple[Word, ...]:
        """Confirmed words that ended by ``time``: those a trimmed buffer no longer holds."""
        return tuple(w for w in self._confirmed if w.end <= time)

    def insert(self, hypothesis: Sequence[Word]) -> list[Word]:
        """Compare a pass with the previous one; return the words both agree on, in order."""
        new = self._unseen(hypothesis)
        agreed = 0
        for old, fresh in zip(self._tentative, new, strict=False):
            if word_key(old.text) != word_key(fresh.text):
                break
            agreed += 1
        # The newer pass heard more audio, so its copy of an agreed word (times,
        # punctuation) is the better one.
        confirmed = new[:agreed]
        self._tentative = new[agreed:]
        self._commit(confirmed)
        return confirmed

    def close(self, hypothesis: Sequence[Word]) -> list[Word]:
        """The turn is over: confirm the final pass's words past the confirmed ones.

        No later pass will come to agree with them; this is whisper_streaming's
        ``finish``. Returns the words confirmed by closing.
        """
        tail = self._unseen(hypothesis)
        self._tentative = []
        self._commit(tail)
        return tail

    def trim(self, time: float) -> None:
        """The audio buffer now starts at ``time``; earlier words are out of it."""
        self._buffer_start = max(self._buffer_start, time)
        self._tentative = [w for w in self._tentative if w.end > self._buffer_start]

    def prompt(self, max_chars: int = 200) -> str:
        """Confirmed text the buffer no longer holds, last ``max_chars`` characters' worth.

        It is fed to Whisper as the prompt, so a pass over a trimmed buffer keeps
        the context (names, casing, style) of what came before, as
        whisper_streaming does. Words still in the buffer are left out: the model
        hears them, and prompting them too makes it repeat them.
        """
        out: list[str] = []
        size = 0
        for word in reversed(self.confirmed_before(self._buffer_start)):
            text = word.text.strip()
            if size + len(text) + 1 > max_chars and out:
                break
            out.append(text)
            size += len(text) + 1
        return " ".join(reversed(out))

    def _unseen(self, hypothesis: Sequence[Word]) -> list[Word]:
        """The part of a pass that is not a re-transcription of confirmed words.

        A pass covers the whole buffer, confirmed audio included. Words that start
        by the time the last confirmed word started are dropped by time; then, since
        times jitter, a start that repeats the last 1-5 confirmed words is dropped by
        text. The last confirmed word's end is no safe bound: a pass that heard it at
        the very end of the buffer stretches it to that end, over the next word's start
        (whisper_streaming's bound, that end less 0.1 s, loses that next word).
        """
        new = [w for w in hypothesis if w.start > self._last_start and w.end > self._buffer_start]
        if new and self._confirmed and abs(new[0].start - self._last_end) < REPEAT_WINDOW_S:
            for n in range(min(len(self._confirmed), len(new), MAX_REPEAT), 0, -1):
                tail = [word_key(w.text) for w in self._confirmed[-n:]]
                head = [word_key(w.text) for w in new[:n]]
                if tail == head:
                    new = new[n:]
                    break
        return new

    def _commit(self, words: Sequence[Word]) -> None:
        if words:
            self._confirmed.extend(words)
            self._last_start = max(self._last_start, words[-1].start)
            self._last_end = max(self._last_end, words[-1].end)
