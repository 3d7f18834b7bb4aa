"""A turn the endpointer closed too soon is held open on its final words (voice/hearing.py).

On a busy machine the endpointer may have no fresh words to judge a pause by,
and ends the turn on the default wait. The final pass then shows what the
words would have said: "4 0 0 1" when eight digits were asked for is not a
whole answer. These tests drive the Hearing stage directly, on real audio and
the real Whisper model, with the endpoints a busy machine's endpointer gives.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from voice.context import CallContext
from voice.frames import CallerAudio16k, Frame, Hangup, SpeechStarted, Transcript, TurnEnded
from voice.hearing import Hearing
from voice.line import CallerScript, MemoryLine
from voice.pool import InferencePool

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng (Debian package) speaks the caller's part")

RATE = 16_000
FRAME = RATE // 50  # 20 ms


def say(text: str) -> np.ndarray:
    from asr.audio import resample
    from voice.espeak_tts import EspeakSynthesizer

    voice = EspeakSynthesizer("en-us+f5")
    audio = np.concatenate(list(voice.synthesize(text)))
    return resample(audio, voice.sample_rate, RATE)


def frames(audio: np.ndarray, t0: float) -> list[CallerAudio16k]:
    out = []
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        chunk = audio[i:i + FRAME].astype(np.float32)
        out.append(CallerAudio16k(chunk, t0 + i / RATE, bool(np.abs(chunk).max() > 0.01)))
    return out


def last_voiced(line: list[CallerAudio16k]) -> float:
    voiced = [f for f in line if f.voiced]
    return voiced[-1].t + FRAME / RATE


class Drive:
    """One Hearing stage on a real transcriber, fed frame by frame like the line would."""

    def __init__(self, config, assistant, expected_digits: int) -> None:
        self.pool = InferencePool()
        line = MemoryLine(CallerScript([]), RATE)
        self.ctx = CallContext("held", line, assistant, self.pool, config)
        self.ctx.expected_digits = expected_digits
        self.stage = Hearing(self.ctx)
        self.out: list[Frame] = []

        async def collect(frame: Frame) -> None:
            self.out.append(frame)
        self.stage.push = collect

    async def feed(self, *items: Frame) -> None:
        for item in items:
            await self.stage.process(item)

    async def first_group_cut(self, first: list[CallerAudio16k],
                              pause: list[CallerAudio16k]) -> None:
        """The first group, then the busy endpointer's default wait (0.7 s) ends the turn."""
        end = last_voiced(first)
        await self.feed(SpeechStarted(0.15, False), *first, *pause[:35])
        await self.feed(TurnEnded(0.15, end, end + 0.7))

    def finals(self) -> list[Transcript]:
        return [f for f in self.out if isinstance(f, Transcript) and f.final]

    def run(self, go: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            asyncio.run(go())
        finally:
            self.pool.close()


def two_groups(gap_s: float) -> tuple[list[CallerAudio16k], list[CallerAudio16k],
                                      list[CallerAudio16k], list[CallerAudio16k]]:
    """ "four zero zero one", a pause, "one two three four", then quiet: four stretches."""
    first = frames(np.concatenate([np.zeros(RATE // 5, np.float32), say("four zero zero one.")]),
                   0.0)
    t = first[-1].t + FRAME / RATE
    pause = frames(np.zeros(int(gap_s * RATE), np.float32), t)
    t = pause[-1].t + FRAME / RATE
    second = frames(say("one two three four."), t)
    t = second[-1].t + FRAME / RATE
    quiet = frames(np.zeros(3 * RATE, np.float32), t)
    return first, pause, second, quiet


def test_digits_read_in_two_groups_are_one_turn_though_the_endpointer_split_them(
        config, assistant) -> None:
    first, pause, second, quiet = two_groups(gap_s=1.0)
    drive = Drive(config, assistant, expected_digits=8)

    async def go() -> None:
        await drive.first_group_cut(first, pause)
        await drive.feed(*pause[35:])
        assert drive.finals() == []  # held: "4 0 0 1" is half of what was asked for
        await drive.feed(SpeechStarted(second[0].t - 0.1, False), *second, *quiet[:30])
        end2 = last_voiced(second)
        await drive.feed(TurnEnded(second[0].t - 0.1, end2, end2 + 0.3))
    drive.run(go)
    finals = drive.finals()
    assert len(finals) == 1
    digits = "".join(c for c in finals[0].text if c.isdigit())
    assert digits == "40011234", finals[0].text
    assert finals[0].start == 0.15  # one turn, from the first group's start
    assert len(finals[0].audio) >= (second[-1].t - 0.15) * RATE  # with all its audio
    started = [f for f in drive.out if isinstance(f, SpeechStarted)]
    ended = [f for f in drive.out if isinstance(f, TurnEnded)]
    assert len(started) == 1 and len(ended) == 1


def test_a_held_turn_nobody_goes_on_with_ends_where_the_long_wait_ends(config, assistant) -> None:
    first, pause, _, quiet = two_groups(gap_s=1.0)
    end1 = last_voiced(first)
    drive = Drive(config, assistant, expected_digits=8)
    wait = config.vad.end_silence_incomplete_ms / 1000

    async def go() -> None:
        await drive.first_group_cut(first, pause)
        await drive.feed(*pause[35:], *quiet)
    drive.run(go)
    finals = drive.finals()
    assert len(finals) == 1
    assert "".join(c for c in finals[0].text if c.isdigit()) == "4001"
    assert finals[0].endpoint == pytest.approx(end1 + wait)  # the wait is on the record
    assert finals[0].speech_end == end1


def test_a_caller_who_hangs_up_on_a_held_turn_is_still_heard(config, assistant) -> None:
    first, pause, _, _ = two_groups(gap_s=1.0)
    drive = Drive(config, assistant, expected_digits=8)

    async def go() -> None:
        await drive.first_group_cut(first, pause)
        await drive.feed(*pause[35:40])
        await drive.feed(Hangup(pause[40].t, "caller hung up"))
    drive.run(go)
    kinds = [type(f).__name__ for f in drive.out]
    assert kinds.index("Transcript") < kinds.index("Hangup")  # the words first, then the end
    assert "".join(c for c in drive.finals()[0].text if c.isdigit()) == "4001"


def test_a_whole_answer_is_not_held(config, assistant) -> None:
    first, pause, _, _ = two_groups(gap_s=1.0)
    end1 = last_voiced(first)
    drive = Drive(config, assistant, expected_digits=4)  # a PIN: four digits are all of it

    async def go() -> None:
        await drive.first_group_cut(first, pause)
    drive.run(go)
    assert len(drive.finals()) == 1
    assert drive.finals()[0].endpoint == end1 + 0.7


def test_a_hold_already_over_when_the_final_pass_returns_ends_at_once(config, assistant) -> None:
    # A slow final pass: the first frame after it is past the end of the hold.
    first, pause, _, quiet = two_groups(gap_s=1.0)
    end1 = last_voiced(first)
    drive = Drive(config, assistant, expected_digits=8)
    late = [f for f in quiet if f.t >= end1 + config.vad.end_silence_incomplete_ms / 1000]

    async def go() -> None:
        await drive.first_group_cut(first, pause)
        await drive.feed(*late[:3])
        await drive.feed(Hangup(late[3].t, "caller hung up"))
    drive.run(go)
    assert len(drive.finals()) == 1
    assert "".join(c for c in drive.finals()[0].text if c.isdigit()) == "4001"
