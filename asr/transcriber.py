"""The speech-recognition interface every backend implements, and how one is chosen."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from asr.transcript import Transcript
from voicedesk.config import AsrConfig
from voicedesk.errors import ConfigError
from voicedesk.models.prepare import ModelStore


class Transcriber(Protocol):
    """Turns 16 kHz mono float32 speech into a transcript with word times."""

    name: str

    def transcribe(self, samples: np.ndarray, prompt: str | None = None) -> Transcript: ...


def create_transcriber(config: AsrConfig, models: ModelStore) -> Transcriber:
    if config.backend == "faster-whisper":
        from asr.faster_whisper_backend import FasterWhisperTranscriber

        return FasterWhisperTranscriber(models.whisper_ct2(config.model), config)
    raise ConfigError(f"unknown asr.backend {config.backend!r}; available: faster-whisper")
