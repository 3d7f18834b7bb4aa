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
    raise ConfigError(f"unknown tts.backend {config.backend!r}; available: piper")
