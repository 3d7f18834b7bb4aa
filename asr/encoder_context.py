"""How much of Whisper's 30-s window the encoder looks at.

Whisper pads every pass to 30 s, so a 3-s turn costs as much encoder time as
30 s of speech, and every decoder step attends over all 1,500 encoder frames.
CTranslate2's encoder also takes a shorter window (its positional encodings
are sliced), and both costs fall with it: tiny.en on 2 cores encodes 10 s in
0.05 s against 0.31 s for 30 s.

The model was trained on 30-s windows, though, and below about 15 s it
starts to invent text (a 1-s clip with a 3-s window: repetition loops). On
the 17 dev recordings, a window of the audio plus 2 s, never under 15 s,
gave the same WER as the full window (11 errors in 211 words) in half the
time; 12 s cost two words and 10 s three. So that is the rule here:
``context_frames`` says how many feature frames to encode, and
``short_context_model`` makes a faster-whisper model that can encode no more.

Live calls use it for their streaming passes (``quick_pass``), the pause
pass the endpointer waits for above all (``asr.context_s``; 30 keeps
Whisper's window), and batch transcription for the pieces of at most 13 s it
cuts each recording into (``asr/long_form.py``). A pass for an expected
answer keeps the full window (account numbers and PINs: on espeak-ng's
digits the short window looped or dropped a digit, and the scenario suite
heard with ``--audio`` fell from 26 to 23 of 26 calls), and so do whole
utterances heard offline and batch windows packed with ``asr.pack`` (mostly
full anyway: side by side the short window was no faster there, 0.94x).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

FULL_FRAMES = 3000  # Whisper's 30-s window, in 10-ms feature frames
MARGIN_FRAMES = 200  # the window reaches this far past the audio (2 s)


def context_frames(content_frames: int, shortest_s: float) -> int:
    """Frames to encode for ``content_frames`` of audio: the audio plus a 2-s margin,
    rounded up to whole seconds, at least ``shortest_s`` and at most 30 s."""
    shortest = int(round(shortest_s * 100))
    if shortest >= FULL_FRAMES:
        return FULL_FRAMES
    wanted = math.ceil((content_frames + MARGIN_FRAMES) / 100) * 100
    return max(shortest, min(FULL_FRAMES, wanted))


def content_frames(features: np.ndarray) -> int:
    """Frames before the padding of a padded window (``pad_or_trim`` pads with exact
    zeros; a log-mel frame of real audio, silence included, is never all zero)."""
    columns = features.reshape(-1, features.shape[-1])
    heard = np.flatnonzero(np.any(columns != 0, axis=0))
    return int(heard[-1]) + 1 if heard.size else 0


@cache
def short_context_model() -> type:
    """faster-whisper's ``WhisperModel`` whose ``encode`` may look at ``context_frames`` of a
    padded 30-s window instead of all of it (``shortest_s`` under 30)."""
    from faster_whisper import WhisperModel

    class ShortContextWhisper(WhisperModel):  # type: ignore[misc]
        def encode(self, features: np.ndarray, shortest_s: float = 30.0) -> Any:
            if features.shape[-1] == FULL_FRAMES and shortest_s * 100 < FULL_FRAMES:
                keep = context_frames(content_frames(features), shortest_s)
                features = np.ascontiguousarray(features[..., :keep])
            return super().encode(features)

    return ShortContextWhisper
