"""The speech-synthesis interface every TTS backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from voicedesk.config import TtsConfig
from voicedesk.errors import ConfigError
from voicedesk.models.prepare import ModelStore


class Synthesizer(Protocol):
    """Speaks text as mono float32 chunks at ``sample_rate``, first chunk as early as possible."""

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[np.ndarray]: ...


def create_synthesizer(config: TtsConfig, models: ModelStore) -> Synthesizer:
    if config.backend == "piper":
        from voice.piper_tts import PiperSynthesizer

        return PiperSynthesizer(models.piper_voice(config.voice), config)
    if config.backend == "espeak-ng":
        from voice.espeak_tts import EspeakSynthesizer

        voice = config.voice if config.voice != TtsConfig.voice else "en-us"
        return EspeakSynthesizer(voice)
    raise ConfigError(f"unknown tts.backend {config.backend!r}; available: piper, espeak-ng")
