"""`voicedesk talk`: a call on the microphone and speaker, without a sound card.

The sound card is the one boundary faked here: a stand-in for the pyaudio module
whose streams call ``MicTransport``'s callbacks on their own threads at real-time
pace, exactly as PortAudio does. The microphone plays a caller's recorded words
after the greeting; the speaker's callback output is captured. Everything behind
it (VAD, Whisper, the dialogue, Piper, the play-out queue) is the real call loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from asr.audio import resample
from tests.conftest import run_cli, wer
from voice.mic import INSTALL, MicTransport, import_pyaudio, talk
from voice.service import CallService
from voice.transport import CallerAudio, LineClosed
from voicedesk.errors import AudioError, ConfigError

RATE = 16_000
HEADSET = {"index": 0, "name": "USB headset", "maxInputChannels": 1, "maxOutputChannels": 2,
           "defaultSampleRate": 48000.0}
SPEAKERS = {"index": 1, "name": "HDMI speakers", "maxInputChannels": 0, "maxOutputChannels": 2,
            "defaultSampleRate": 48000.0}


def say(text: str) -> np.ndarray:
    """A caller's words, recorded: espeak-ng, a voice unlike the assistant's."""
    from voice.espeak_tts import EspeakSynthesizer

    voice = EspeakSynthesizer("en-us+f5")
    return resample(np.concatenate(list(voice.synthesize(text))), voice.sample_rate, RATE)


class Room:
    """The person at the microphone: waits for the greeting, speaks, listens, hangs up."""

    def __init__(self, words: np.ndarray, rate: int = RATE, hang_up_after_s: float = 1.5) -> None:
        self.words, self.rate = words, rate
        self.hang_up_after_s = hang_up_after_s
        self.heard: list[np.ndarray] = []  # what came out of the speaker, buffer by buffer
        self.sent = 0  # microphone samples so far
        self.spoke_at: tuple[int, int] | None = None  # microphone samples: start, end
        self.hung_up = False
        self._quiet = 0  # speaker samples of silence since the assistant last spoke
        self._replies = 0  # assistant utterances heard (greeting, reply)
        self._replies_before: int | None = None  # ... when the caller began to speak
        self._speaking = False
        self._lock = threading.Lock()

    def speaker(self, data: bytes) -> None:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
        with self._lock:
            self.heard.append(samples)
            if np.abs(samples).max() > 0.01:
                if not self._speaking:
                    self._replies += 1
                self._speaking, self._quiet = True, 0
            else:
                self._quiet += len(samples)
                if self._quiet > 0.4 * self.rate:
                    self._speaking = False

    def microphone(self, count: int) -> bytes:
        out = np.zeros(count, dtype=np.float32)
        with self._lock:
            quiet_s = self._quiet / self.rate
            if self.spoke_at is None and self._replies >= 1 and quiet_s >= 1.0:
                self.spoke_at = (self.sent, self.sent + len(self.words))  # after the greeting
                # Counted now, not when the words run out: a quick reply may start while
                # the recording's trailing silence is still being played in.
                self._replies_before = self._replies
            if self.spoke_at is not None and self.sent < self.spoke_at[1]:
                part = self.words[self.sent - self.spoke_at[0]:][:count]
                out[:len(part)] = part
            elif (self._replies_before is not None and not self.hung_up
                  and self._replies > self._replies_before
                  and quiet_s >= self.hang_up_after_s):
                self.hung_up = True  # the reply is over: Ctrl-C
                os.kill(os.getpid(), signal.SIGINT)
        self.sent += count
        return (np.clip(out, -1, 1) * 32767).astype("<i2").tobytes()


class FakeStream:
    """A PortAudio callback stream: a thread that calls back every buffer, on the clock."""

    def __init__(self, room: Room, rate: int, frames_per_buffer: int, stream_callback: Any,
                 input: bool = False, output: bool = False, **_: Any) -> None:
        self.room, self.rate, self.n = room, rate, frames_per_buffer
        self.callback, self.is_input = stream_callback, input
        self.active = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start_stream(self) -> None:
        self.active = True
        self._thread.start()

    def stop_stream(self) -> None:
        self.active = False
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def close(self) -> None:
        self.active = False

    def _run(self) -> None:
        start, tick = time.monotonic(), 0
        while self.active:
            if self.is_input:
                _, flag = self.callback(self.room.microphone(self.n), self.n, {}, 0)
            else:
                data, flag = self.callback(None, self.n, {}, 0)
                assert len(data) == 2 * self.n  # 16-bit mono, a full buffer every time
                self.room.speaker(data)
            if flag != FAKE.paContinue:
                break
            tick += 1
            time.sleep(max(0.0, start + tick * self.n / self.rate - time.monotonic()))


class FakePortAudio:
    devices: list[dict[str, Any]] = [HEADSET, SPEAKERS]
    room: Room | None = None

    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self.terminated = False

    def get_device_count(self) -> int:
        return len(self.devices)

    def get_device_info_by_index(self, index: int) -> dict[str, Any]:
        return self.devices[index]

    def get_default_input_device_info(self) -> dict[str, Any]:
        for device in self.devices:
            if device["maxInputChannels"]:
                return device
        raise OSError("No Default Input Device Available")

    def get_default_output_device_info(self) -> dict[str, Any]:
        for device in self.devices:
            if device["maxOutputChannels"]:
                return device
        raise OSError("No Default Output Device Available")

    def is_format_supported(self, rate: float, **_: Any) -> bool:
        if rate not in (8000, 16000, 48000):
            raise ValueError("Invalid sample rate")
        return True

    def open(self, **kwargs: Any) -> FakeStream:
        assert kwargs["format"] == FAKE.paInt16 and kwargs["channels"] == 1
        self.opened.append(kwargs)
        assert self.room is not None
        return FakeStream(self.room, **kwargs)

    def terminate(self) -> None:
        self.terminated = True


FAKE = SimpleNamespace(PyAudio=FakePortAudio, paInt16=8, paContinue=0, paComplete=1,
                       paInputOverflow=2)


@pytest.fixture
def sound_card():
    FakePortAudio.devices = [HEADSET, SPEAKERS]
    yield FakePortAudio
    FakePortAudio.room = None


# ---- devices and errors ---------------------------------------------------------------

def test_the_default_devices_are_the_ones_with_input_and_output(sound_card) -> None:
    mic = MicTransport(pyaudio_module=FAKE)
    assert (mic.input_device, mic.output_device) == (0, 0)
    assert mic.info.channel == "mic" and mic.info.sample_rate == RATE
    assert mic.info.metadata == {"input": "USB headset", "output": "USB headset"}
    assert MicTransport(output_device=1, pyaudio_module=FAKE).output_device == 1


def test_a_device_without_a_microphone_is_refused_by_name(sound_card) -> None:
    with pytest.raises(AudioError, match=r"--input-device 1 \(HDMI speakers\) has no input"):
        MicTransport(input_device=1, pyaudio_module=FAKE)


def test_a_device_index_out_of_range_says_how_many_there_are(sound_card) -> None:
    with pytest.raises(AudioError, match=r"--output-device 5: no such device; there are 2 "
                                         r"\(0-1\)"):
        MicTransport(output_device=5, pyaudio_module=FAKE)


def test_an_unsupported_rate_suggests_the_devices_own(sound_card) -> None:
    with pytest.raises(AudioError, match="cannot input 16-bit mono at 22050 Hz .*--rate 48000"):
        MicTransport(rate=22050, pyaudio_module=FAKE)


def test_no_devices_at_all_is_a_clear_error(sound_card) -> None:
    sound_card.devices = []
    with pytest.raises(AudioError, match="PortAudio finds no audio devices"):
        MicTransport(pyaudio_module=FAKE)


def test_without_pyaudio_the_error_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyaudio", None)  # as if it were not installed
    with pytest.raises(ConfigError) as err:
        import_pyaudio()
    assert str(err.value) == INSTALL
    assert "pip install 'voicedesk[mic]'" in INSTALL and "portaudio19-dev" in INSTALL


def test_the_real_pyaudio_on_a_machine_without_a_sound_card_says_so() -> None:
    pyaudio = pytest.importorskip("pyaudio", reason="PyAudio (voicedesk[mic]) not installed")
    portaudio = pyaudio.PyAudio()
    count = portaudio.get_device_count()
    portaudio.terminate()
    if count:
        pytest.skip("this machine has audio devices")
    with pytest.raises(AudioError, match="no audio devices"):
        MicTransport()


# ---- the transport on the clock ---------------------------------------------------------

def test_the_microphone_arrives_as_caller_audio_and_the_speaker_drains_the_queue(
        sound_card) -> None:
    room = Room(np.zeros(0, np.float32))
    sound_card.room = room
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE // 2) / RATE)).astype(np.float32)

    async def go() -> list[Any]:
        mic = MicTransport(pyaudio_module=FAKE)
        mic.play(tone)
        events = [await mic.receive() for _ in range(25)]  # half a second of microphone
        assert mic.played_s > 0.2  # the speaker's clock, not ours
        assert mic.played_s + mic.pending_s == pytest.approx(0.5)
        mic.hang_up()
        events += [await mic.receive() for _ in range(3)]
        await mic.close()
        await mic.close()  # idempotent
        events.append(await mic.receive())
        return events

    events = asyncio.run(go())
    audio = [e for e in events if isinstance(e, CallerAudio)]
    assert len(audio) >= 25 and all(len(e.samples) == 320 for e in audio)  # 20 ms buffers
    assert isinstance(events[-1], LineClosed)
    heard = np.concatenate(room.heard)
    assert np.allclose(heard[:len(tone)], tone, atol=1e-4)  # queued before the call: first
    assert not heard[len(tone):].any()  # then silence, never a starved (short) buffer


# ---- a whole call -----------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng speaks the caller")
def test_a_call_on_the_microphone_is_answered_until_ctrl_c(sound_card, config,
                                                           assistant) -> None:
    room = Room(say("Hi, my internet has been down since this morning."))
    sound_card.room = room
    mic = MicTransport(pyaudio_module=FAKE)

    outcome = asyncio.run(asyncio.wait_for(talk(CallService(config, assistant), mic), 90))

    assert room.hung_up and outcome.ended == "caller hung up"
    turns = [t for t in outcome.turns if t.transcript]
    assert len(turns) == 1
    assert "internet" in turns[0].transcript.lower() and turns[0].intent == "report_outage"
    assert outcome.stored
    # The speaker: the greeting, the caller's turn, then the reply, which is what the loop
    # says the caller heard.
    assert room.spoke_at is not None
    heard = np.concatenate(room.heard)
    after = heard[room.spoke_at[1]:]
    loud = np.nonzero(np.abs(after) > 0.01)[0]
    assert len(loud) and (loud[-1] - loud[0]) / RATE > 1.0, "no reply after the caller spoke"
    reply = after[loud[0]:loud[-1] + 1]
    text = assistant.transcriber.transcribe(reply).text
    assert turns[0].heard and wer(turns[0].heard, text) <= 0.35, (turns[0].heard, text)


def test_talk_list_devices_runs_without_a_sound_card(home) -> None:
    pytest.importorskip("pyaudio", reason="PyAudio (voicedesk[mic]) not installed")
    result = run_cli(["talk", "--list-devices"], home, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Hz" in result.stdout or "no audio devices" in result.stdout
