"""Stage 1: voice activity, turn endpoints and barge-in, frame by frame on the event loop.

Everything here is cheap (webrtcvad is microseconds per frame) and so runs
inline, never behind a model: this is what must react within 200 ms when a
caller talks over the assistant.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Collection

import numpy as np

from asr.audio import resample
from asr.streaming import Expectation
from nlu.numbers import HOMOPHONES, fits_lengths, spoken_digits_to_text
from voice.context import CallContext
from voice.echo import RATE as ECHO_RATE
from voice.echo import EchoGate
from voice.frames import (
    CallerAudio16k,
    Frame,
    Hangup,
    Interruption,
    InterruptionCancelled,
    SpeechStarted,
    TurnEnded,
)
from voice.pipeline import Stage
from voice.vad import create_vad

log = logging.getLogger(__name__)
SPEECH_RATE = 16_000
NOISE_MARGIN = 3.0  # about 10 dB above the noise floor
BARGE_IN_MARGIN = 4.0  # talking over the assistant needs 12 dB over the floor
MIN_LEVEL = 0.003  # -50 dBFS RMS: quieter than any caller the line carries
CALLER_MARGIN = 0.15  # a new turn starts no more than 16 dB below the caller's own speech
CALLER_FRAMES = 20  # voiced frames heard from the caller before their level is trusted
# Digits a beam search can restore to a reading that has too few: one or two merged repeats.
DIGITS_A_BEAM_RESTORES = 2

# Words after which a sentence cannot be over: the caller is still talking.
_CONTINUES_TEXT = (
    "a an the and or but so because if to of for from with at in on by as my our your his her "
    "their its is are was were be am it's i'm that's um uh er erm like then than number numbers "
    "account pin code which who what's about into"
)
_CONTINUES = frozenset(_CONTINUES_TEXT.split())
_WORD = re.compile(r"[a-z0-9']+")
_TRAILING_DIGITS = re.compile(r"\d[\d\s,.\-]*\W*$")
# "It's for 0019012": Whisper writes a digit that sounds like a word as the word.
_HOMOPHONE_DIGIT = re.compile(
    rf"\b(?:{'|'.join(HOMOPHONES)})\b(?=[\s,.\-]*\d)", re.IGNORECASE)


def sounds_finished(text: str, expected_digits: int = 0,
                    lengths: Collection[int] = ()) -> bool | None:
    """Do these words end a turn? None: no words to judge by, or no way to tell.

    A turn that ends in digits, when the assistant asked for ``expected_digits``
    of them: fewer means the caller is still reading (callers read numbers in
    groups, with pauses between them); exactly that many means done. More are
    done when every number has one of the ``lengths`` a digits slot takes, the
    last one too (the account number and then the PIN, in one breath); else,
    or digits nobody asked for, they are unclear (a date of birth may follow).
    """
    words = _WORD.findall(text.lower())
    if not words:
        return None
    as_digits = spoken_digits_to_text(text)
    if _TRAILING_DIGITS.search(as_digits):
        if not expected_digits:
            return None
        count = sum(c.isdigit() for c in as_digits) + len(_HOMOPHONE_DIGIT.findall(as_digits))
        if count != expected_digits:
            return False if count < expected_digits else _whole_numbers(as_digits, lengths)
        return True
    if text.rstrip().endswith(("?", "!")):
        return True
    return not (words[-1] in _CONTINUES or text.rstrip().endswith((",", "-", "...")))


def _whole_numbers(as_digits: str, lengths: Collection[int]) -> bool | None:
    """More digits than asked for: True when every number, the last above all, has one of
    ``lengths`` digits; None (unclear) otherwise."""
    runs = re.findall(r"\d+", as_digits)
    if not lengths or not runs or len(runs[-1]) not in lengths:
        return None
    return True if fits_lengths(as_digits, lengths) else None


def expected_answer(expected_digits: int, lengths: frozenset[int], hint: str
                    ) -> Expectation | None:
    """While digits are asked for, what the answer looks like: numbers of the lengths the
    digits slots take, and enough digits to be done. None: nothing to expect."""
    if not expected_digits or not lengths or not hint:
        return None

    def fits(text: str) -> bool:
        return (fits_lengths(text, lengths)
                and sounds_finished(text, expected_digits, lengths) is not False)

    def near(text: str) -> bool:
        # a beam reading differs from greedy's by a word or two: one that is short by more
        # than a merged repeat or two ("4, 0." for eight digits, at a pause) is not searched
        return sum(c.isdigit() for c in text) >= expected_digits - DIGITS_A_BEAM_RESTORES

    return Expectation(hint, fits, near)


class Listening(Stage):
    name = "listening"

    def __init__(self, ctx: CallContext) -> None:
        super().__init__()
        self.ctx = ctx
        vad_config = ctx.config.vad
        self.vad = create_vad(vad_config)
        self.frame_ms = self.vad.frame_ms
        self.frame = SPEECH_RATE * self.frame_ms // 1000
        self.echo = EchoGate(ctx.reference)
        self._pending = np.zeros(0, dtype=np.float32)
        self._t = 0.0  # line time of the start of _pending
        self._recent: deque[bool] = deque(maxlen=max(1, round(vad_config.min_speech_ms
                                                               / self.frame_ms)))
        self._barge: deque[bool] = deque(maxlen=max(2, round(ctx.config.call.barge_in_ms
                                                             / self.frame_ms) + 1))
        self.in_turn = False
        self.turn_start = 0.0
        self.last_voiced = 0.0
        self.padding = vad_config.padding_ms / 1000
        self.ends = (vad_config.end_silence_complete_ms / 1000,
                     vad_config.end_silence_ms / 1000,
                     vad_config.end_silence_incomplete_ms / 1000)
        self._pause_since = 0.0  # barge-in pause: when the caller went quiet again
        self._turn_in_pause = False  # a turn began while the reply was paused
        # Background noise and babble that webrtcvad calls speech: a frame must also stand
        # out from the line's noise floor (a low percentile of the last few seconds).
        self._levels: deque[float] = deque(maxlen=round(5000 / self.frame_ms))
        self._recent_power: deque[float] = deque(maxlen=round(500 / self.frame_ms))
        self._level = 0.0  # of the newest frame
        self._floor = 0.0  # the line's noise floor
        # The caller's own speech level: the median of their voiced frames in turns.
        self._speech: deque[float] = deque(maxlen=round(10_000 / self.frame_ms))

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, CallerAudio16k):
            self._pending = np.concatenate([self._pending, frame.samples])
            if len(self._pending) == len(frame.samples):
                self._t = frame.t
            while len(self._pending) >= self.frame:
                chunk, self._pending = self._pending[:self.frame], self._pending[self.frame:]
                t = self._t
                self._t += self.frame / SPEECH_RATE
                await self._frame(chunk, t)
        elif isinstance(frame, Hangup):
            if self.in_turn:  # what the caller said before hanging up is still a turn
                self.in_turn = False
                await self.push(TurnEnded(self.turn_start, self.last_voiced, frame.t))
            await self.push(frame)  # after the caller's audio: a turn held open ends with it
        else:
            await self.push(frame)

    async def _frame(self, chunk: np.ndarray, t: float) -> None:
        end = t + self.frame_ms / 1000
        self.echo.push(resample(chunk, SPEECH_RATE, ECHO_RATE), end)
        loud = self._above_floor(chunk)  # every frame: the floor is learnt from all of them
        # Babble and a TV far below the caller's own voice are not the caller: they neither
        # start a turn, nor hold one open, nor talk over the assistant.
        loud = loud and self._level >= self._caller_gate()
        voiced = loud and self.vad.is_speech(chunk, SPEECH_RATE)
        if voiced and self.echo.active() and self.echo.is_echo():
            voiced = False  # our own voice coming back
        await self.push(CallerAudio16k(chunk, t, voiced))
        await self._barge_in(voiced, t, end)
        self._recent.append(voiced)
        if voiced:
            self.last_voiced = end
            if self.in_turn:
                self._speech.append(self._level)
        if not self.in_turn:
            full = len(self._recent) == self._recent.maxlen
            if full and sum(self._recent) >= 0.8 * len(self._recent):
                first = len(self._recent) - 1 - list(self._recent).index(True)
                self.in_turn = True
                self.turn_start = max(0.0, t - first * self.frame_ms / 1000 - self.padding)
                self._turn_in_pause = self.ctx.interrupted  # the turn manager resolves it
                await self.push(SpeechStarted(self.turn_start, self.ctx.speaking()))
            return
        silence = end - self.last_voiced
        if silence < self.ends[0]:
            return
        finished = sounds_finished(self.ctx.latest_partial, self.ctx.expected_digits,
                                   self.ctx.digit_lengths)
        if self.ctx.latest_partial_t < self.last_voiced - 0.05:
            # Older words say nothing about the end: the last ones are missing. A pause
            # pass on its way will tell (and the reply needs it anyway); without one, the
            # turn gets the default wait, neither an early nor a late end.
            finished = False if self.ctx.pause_pass_pending else None
        need = self.ends[1] if finished is None else self.ends[0] if finished else self.ends[2]
        if silence >= need:
            log.debug("turn ended after %.0f ms of silence (finished: %s): %r",
                      silence * 1000, finished, self.ctx.latest_partial)
            self.in_turn = False
            self._recent.clear()
            await self.push(TurnEnded(self.turn_start, min(end, self.last_voiced + self.padding),
                                      end))

    def _above_floor(self, chunk: np.ndarray) -> bool:
        """Minimum statistics: the floor is the quietest half-second of the last five.

        Steady noise and babble keep every half-second at their own level, so the
        floor rises to meet them; a caller's pauses between phrases keep it low.
        """
        power = float(np.mean(chunk.astype(np.float64) ** 2))
        self._level = float(np.sqrt(power))
        self._recent_power.append(power)
        if len(self._recent_power) == self._recent_power.maxlen:
            self._levels.append(float(np.sqrt(np.mean(self._recent_power))))
        if not self._levels:
            return False  # the first half-second: the line's noise is not known yet
        self._floor = min(self._levels)
        return self._level > max(NOISE_MARGIN * self._floor, MIN_LEVEL)

    def _caller_gate(self) -> float:
        """The quietest frame that can be the caller, once their voice has been heard."""
        if len(self._speech) < CALLER_FRAMES:
            return 0.0
        return CALLER_MARGIN * float(np.median(self._speech))

    async def _barge_in(self, voiced: bool, t: float, end: float) -> None:
        """Pause the reply as soon as the caller really talks over it (see module docstring)."""
        ctx = self.ctx
        # Over the assistant, only a clearly louder voice counts (babble and TV do not).
        self._barge.append(voiced and self._level > BARGE_IN_MARGIN * self._floor)
        if not ctx.interrupted:
            if ctx.transport.pending_s > 0 and len(self._barge) == self._barge.maxlen \
                    and sum(self._barge) >= len(self._barge) - 1:
                ctx.interrupted = True
                ctx.barge_ins += 1
                self._pause_since = 0.0
                self._turn_in_pause = self.in_turn
                await self.broadcast(Interruption(end))
            return
        # Paused: a burst too short to become a turn (a cough, a click) resumes the reply.
        # Once it is a turn, its words decide (the turn manager: backchannel or not).
        if voiced or self._turn_in_pause:
            self._pause_since = 0.0
        elif not self.in_turn:
            self._pause_since = self._pause_since or end
            if end - self._pause_since >= self.ends[0]:
                ctx.interrupted = False
                ctx.false_barge_ins += 1
                await self.broadcast(InterruptionCancelled(end))
