"""The speech-synthesis interface every TTS backend implements.

Backends: Piper (the default, a bundled voice), Coqui TTS (an optional extra that runs
in its own Python environment: ``voice/coqui_tts.py``) and espeak-ng (no model files at
all: the fallback). Each speaks at its own rate; the call loop resamples to the line's
(``asr.audio.resample``: 8 kHz telephony, 16/24/48 kHz clients).
"""

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
    if config.backend == "coqui":
        from voice.coqui_tts import CoquiSynthesizer

        return CoquiSynthesizer(config)
    raise ConfigError(f"unknown tts.backend {config.backend!r}; available: piper, coqui, "
                      f"espeak-ng")
