"""The speech-recognition interface every backend implements, and how one is chosen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from asr.transcript import Transcript
from voicedesk.config import AsrConfig
from voicedesk.errors import ConfigError
from voicedesk.models.prepare import ModelStore


class Transcriber(Protocol):
    """Turns 16 kHz mono float32 speech into a transcript with word times."""

    name: str

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        """``fallback``: re-decode at higher temperatures when a pass looks unreliable
        (faster-whisper's default); streaming passes turn it off to bound latency."""
        ...


@runtime_checkable
class QuickTranscriber(Protocol):
    """A backend with a cheaper pass for live partials (faster-whisper: a shorter window)."""

    def quick_pass(self, samples: np.ndarray, prompt: str | None = None) -> Transcript:
        """What ``transcribe(samples, prompt, fallback=False)`` hears, for less time and
        perhaps a little accuracy: a streaming pass that nobody's answer depends on alone."""
        ...


@runtime_checkable
class AlternativesTranscriber(Protocol):
    """A backend that can list what else an utterance may have said (faster-whisper)."""

    def alternatives(self, samples: np.ndarray, prompt: str | None = None,
                     count: int = 8) -> list[str]:
        """Up to ``count`` readings of at most 30 s of speech, the likeliest first."""
        ...


@runtime_checkable
class SearchingTranscriber(Protocol):
    """A backend that can search one window's readings for one that fits (faster-whisper)."""

    def reading_that_fits(self, samples: np.ndarray, prompt: str | None,
                          fits: Callable[[str], bool], count: int = 8) -> Transcript | None:
        """The likeliest of up to ``count`` readings of at most 30 s of speech that
        ``fits``, with word times; None if none does."""
        ...


@runtime_checkable
class WindowTranscriber(Protocol):
    """A backend that decodes up to 30 s with one encoder pass and says how far it got
    (faster-whisper): the pieces of a recording heard alone, or a packed window."""

    def transcribe_window(self, samples: np.ndarray, starts: Sequence[float] = (),
                          short: bool = False) -> tuple[Transcript, float]:
        """The transcript, and the time up to which it is complete; ``starts`` are the
        times where the packed pieces begin; ``short``: a shorter encoder window where
        the backend has one (faster-whisper's ``asr.context_s``)."""
        ...

    def transcribe_windows(self, pieces: Sequence[np.ndarray], short: bool = False
                           ) -> list[tuple[Transcript, float]]:
        """``transcribe_window`` of each piece (no ``starts``), decoded together where the
        backend can batch them."""
        ...


def create_transcriber(config: AsrConfig, models: ModelStore, replicas: int = 1
                       ) -> Transcriber:
    """The backend ``asr.backend`` names, on the weights ``asr.model`` names.

    Each backend imports its engine only here, so a deployment needs only the
    engine it uses; the model is converted for it once and cached. ``replicas``
    asks for that many concurrent ``transcribe`` calls (``asr.threads`` each),
    where the engine can serve them (faster-whisper); others serve one at a time.
    """
    if config.backend == "faster-whisper":
        from asr.faster_whisper_backend import FasterWhisperTranscriber

        return FasterWhisperTranscriber(models.whisper_ct2(config.model), config, replicas)
    if config.backend == "openai-whisper":
        import importlib.util

        if importlib.util.find_spec("whisper") is None:
            raise ConfigError("asr.backend = 'openai-whisper' needs the openai-whisper package: "
                              "pip install 'voicedesk[openai-whisper]'")
        from asr.openai_whisper_backend import OpenAIWhisperTranscriber

        return OpenAIWhisperTranscriber(models.whisper_openai(config.model), config)
    if config.backend == "transformers":
        from asr.transformers_backend import TransformersWhisperTranscriber

        return TransformersWhisperTranscriber(models.whisper_hf(config.model), config)
    raise ConfigError(f"unknown asr.backend {config.backend!r}; available: faster-whisper, "
                      "openai-whisper, transformers")
